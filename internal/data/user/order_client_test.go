package user_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/biz"
	userbiz "github.com/rampart-go/rampart/internal/biz/user"
	userdata "github.com/rampart-go/rampart/internal/data/user"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/rpc"
	"github.com/rampart-go/rampart/internal/server"
	usersvc "github.com/rampart-go/rampart/internal/service/user"
)

// orderService answers every ListOrders with a page of orders items long,
// and counts the calls it answered.
type orderService struct {
	orderv1.UnimplementedOrderServiceServer
	item  string
	calls atomic.Int32
}

func (o *orderService) ListOrders(_ context.Context, req *orderv1.ListOrdersRequest) (*orderv1.ListOrdersReply, error) {
	o.calls.Add(1)
	reply := &orderv1.ListOrdersReply{NextPageToken: "next"}
	for range req.GetPageSize() {
		reply.Orders = append(reply.Orders, &orderv1.Order{Id: "o", UserId: req.GetUserId(), Item: o.item, Quantity: 1})
	}
	return reply, nil
}

// serveOrders serves svc on a free local port until the test ends.
func serveOrders(t *testing.T, svc orderv1.OrderServiceServer) string {
	t.Helper()
	lis, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	orderv1.RegisterOrderServiceServer(srv, svc)
	healthpb.RegisterHealthServer(srv, health.NewServer()) // Kratos' client checks it
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// dialOrders connects as server.Dialer does, through the real client chain
// (retry, breaker, attempt timeout) with its default policy, and with a
// receive limit of recvLimit bytes in place of gRPC's 4 MiB.
func dialOrders(t *testing.T, addr string, recvLimit int) *userdata.OrderConn {
	t.Helper()
	server.Setup()
	c := middleware.DefaultClientConfig()
	c.Target = addr
	chain, err := middleware.NewClients(middleware.ClientConfigs{"order": c}, log.NewStdLogger(io.Discard), nil).For("order")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := kgrpc.DialInsecure(context.Background(),
		kgrpc.WithEndpoint(chain.Target),
		kgrpc.WithTimeout(0),
		kgrpc.WithMiddleware(chain.Middleware...),
		kgrpc.WithUnaryInterceptor(chain.Interceptors...),
		kgrpc.WithOptions(append(chain.Dial, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(recvLimit)))...),
		kgrpc.WithNodeFilter(chain.NodeFilters...),
		kgrpc.WithPrintDiscoveryDebugLog(false),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &userdata.OrderConn{ClientConn: conn}
}

// Issue 11's guarantee, now that a profile is one bounded page and real
// replies stay far below gRPC's 4 MiB: a reply over the client's own
// receive limit is classified as local, not a dependency outage. It is not
// retried (the order service answers once), the data layer calls it
// biz.ErrReplyTooLarge, and GetUserProfile answers ResourceExhausted
// REPLY_TOO_LARGE without calling the healthy order service unavailable.
func TestReplyOverTheReceiveLimitIsNotADependencyOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := &orderService{item: strings.Repeat("i", 190)}
	conn := dialOrders(t, serveOrders(t, orders), 4<<10) // a 50-order page is about 12 KB

	_, err := userdata.NewOrderHistory(conn).FirstOrders(ctx, "u1", userbiz.ProfileOrders)
	if !errors.Is(err, biz.ErrReplyTooLarge) {
		t.Fatalf("FirstOrders over the limit: %v, want ErrReplyTooLarge", err)
	}
	_, raw := orderv1.NewOrderServiceClient(conn).ListOrders(ctx, &orderv1.ListOrdersRequest{UserId: "u1", PageSize: userbiz.ProfileOrders})
	if o := rpc.Classify(ctx, raw); o.Code != codes.ResourceExhausted || o.Origin != rpc.OriginLocal || o.Transient {
		t.Errorf("the limit's error %v is classified %+v, want ResourceExhausted, local and not transient", raw, o)
	}

	repo := userdata.NewStore()
	s := usersvc.NewService(userbiz.NewUsecase(repo, userdata.NewOrderHistory(conn)), log.NewStdLogger(io.Discard))
	ada, err := s.CreateUser(ctx, &userv1.CreateUserRequest{Name: "Ada", Email: "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	before := orders.calls.Load()
	_, err = s.GetUserProfile(ctx, &userv1.GetUserProfileRequest{Id: ada.GetUser().GetId()})
	if status.Code(err) != codes.ResourceExhausted || kerrors.Reason(err) != rpc.ReasonReplyTooLarge {
		t.Fatalf("GetUserProfile = %v (reason %q), want ResourceExhausted %s", err, kerrors.Reason(err), rpc.ReasonReplyTooLarge)
	}
	if strings.Contains(err.Error(), "unavailable") {
		t.Errorf("the answer calls the dependency unavailable: %v", err)
	}
	if n := orders.calls.Load() - before; n != 1 {
		t.Errorf("order answered ListOrders %d times for one profile, want 1: a local size limit was retried", n)
	}
}

// Under the limit the profile's page comes through with the order
// service's token for the rest.
func TestFirstOrdersAsksForOnePage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := &orderService{item: "pen"}
	conn := dialOrders(t, serveOrders(t, orders), 4<<20)
	page, err := userdata.NewOrderHistory(conn).FirstOrders(ctx, "u1", userbiz.ProfileOrders)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Orders) != userbiz.ProfileOrders || page.NextPageToken != "next" || orders.calls.Load() != 1 {
		t.Fatalf("page of %d orders, token %q, %d calls; want %d, %q, 1", len(page.Orders), page.NextPageToken, orders.calls.Load(), userbiz.ProfileOrders, "next")
	}
}
