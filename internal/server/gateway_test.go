package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/registry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/server"
	"github.com/rampart-go/rampart/internal/service"
)

// slowOrders answers GetOrder at once, except for the id "slow", which it
// holds until release is closed.
type slowOrders struct {
	orderv1.UnimplementedOrderServiceServer
	entered, release chan struct{}
}

func (s *slowOrders) GetOrder(_ context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderReply, error) {
	if req.GetId() == "slow" {
		close(s.entered)
		<-s.release
	}
	return &orderv1.GetOrderReply{Order: &orderv1.Order{Id: req.GetId()}}, nil
}

func noCheck(*registry.ServiceInstance) (healthpb.HealthCheckResponse_ServingStatus, int, bool) {
	return 0, 0, true
}

// TestGatewayStopsFirst: the gateway serves the API through the gRPC port
// and is registered as the metadata "gateway"; on stop it closes its
// listener first and lets an HTTP call in flight finish through a gRPC
// server that is still serving, which stops only after it.
func TestGatewayStopsFirst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := conf.Default()
	c.Service.Name = "order"
	c.Server.DrainDelay = 100 * time.Millisecond
	orders := &slowOrders{entered: make(chan struct{}), release: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(orders.release) }) }
	defer release() // a failed test still lets the call and the stop end
	rec := &recorder{registered: make(chan *registry.ServiceInstance, 1), check: noCheck}
	app := newAppServing(ctx, t, c, rec, orders)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	ins := <-rec.registered
	gw := ins.Metadata["gateway"]
	if gw == "" {
		t.Fatalf("registered metadata %v has no gateway", ins.Metadata)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	get := func(id string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+gw+"/v1/orders/"+id, nil)
		if err != nil {
			return 0, "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	if code, body, err := get("o-1"); err != nil || code != http.StatusOK || !strings.Contains(body, `"id":"o-1"`) {
		t.Fatalf("GET /v1/orders/o-1 = %d %s %v, want 200 with the order", code, body, err)
	}

	inFlight := make(chan int, 1)
	go func() {
		code, _, _ := get("slow")
		inFlight <- code
	}()
	<-orders.entered
	stop()
	// The gateway's listener closes while its call is still in flight...
	var d net.Dialer
	closed, cancelClosed := context.WithTimeout(ctx, 5*time.Second)
	defer cancelClosed()
	for {
		conn, err := d.DialContext(closed, "tcp", gw)
		if err != nil {
			break
		}
		_ = conn.Close()
		select {
		case <-closed.Done():
			t.Fatal("the gateway kept taking connections while its call was in flight: stopped after gRPC?")
		case <-time.After(20 * time.Millisecond):
		}
	}
	// ...while the gRPC port still takes new calls.
	u := strings.TrimPrefix(strings.Split(ins.Endpoints[0], "?")[0], "grpc://")
	conn, err := grpc.NewClient(u, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := orderv1.NewOrderServiceClient(conn).GetOrder(ctx, &orderv1.GetOrderRequest{Id: "o-2"}); err != nil {
		t.Fatalf("gRPC call after the gateway closed: %v; want gRPC still serving", err)
	}
	release()
	if code := <-inFlight; code != http.StatusOK {
		t.Errorf("the HTTP call in flight at stop got %d, want 200", code)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// TestGatewayOff: with server.gateway.addr empty there is no gateway, and
// the instance registers no gateway address.
func TestGatewayOff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := conf.Default()
	c.Service.Name = "order"
	c.Server.DrainDelay = 0
	c.Server.Gateway.Addr = ""
	rec := &recorder{registered: make(chan *registry.ServiceInstance, 1), check: noCheck}
	app := newAppServing(ctx, t, c, rec, &slowOrders{})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	ins := <-rec.registered
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if gw, ok := ins.Metadata["gateway"]; ok {
		t.Fatalf("registered gateway %q with server.gateway.addr empty", gw)
	}
}

// A service without HTTP routes runs without a gateway, and says so.
func TestNoRoutesNoGateway(t *testing.T) {
	var logged strings.Builder
	gw := server.NewGateway(conf.Default().Server.Gateway, service.API{Desc: &orderv1.OrderService_ServiceDesc}, log.NewStdLogger(&logged))
	if gw != nil {
		t.Fatal("a gateway for a service without HTTP routes")
	}
	if !strings.Contains(logged.String(), "no HTTP routes") {
		t.Errorf("logged %q, want a line saying there is no gateway", logged.String())
	}
}
