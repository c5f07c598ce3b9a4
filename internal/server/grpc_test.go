package server_test

import (
	"context"
	"net"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	kmiddleware "github.com/go-kratos/kratos/v2/middleware"
	"github.com/go-kratos/kratos/v2/transport"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/server"
	"github.com/rampart-go/rampart/internal/service"
)

// users answers GetUser with the ID it was asked for.
type users struct {
	userv1.UnimplementedUserServiceServer
}

func (users) GetUser(_ context.Context, req *userv1.GetUserRequest) (*userv1.GetUserReply, error) {
	return &userv1.GetUserReply{User: &userv1.User{Id: req.GetId()}}, nil
}

// serveUsers serves users behind chain as the services serve their API
// (server.NewGRPCServer, no telemetry) and returns a client of it and
// the endpoint the server reports.
func serveUsers(t *testing.T, g conf.GRPC, chain ...kmiddleware.Middleware) (*grpc.ClientConn, string) {
	t.Helper()
	srv := server.NewGRPCServer(g, middleware.ServerChain(chain), health.NewServer(), nil, server.NewStreams(),
		service.API{Desc: &userv1.UserService_ServiceDesc, Impl: users{}}, nil)
	var lc net.ListenConfig
	lis, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Bind(lis, nil)
	endpoint, err := srv.Endpoint()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Start(context.Background()) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return conn, endpoint.String()
}

func testGRPC(timeout time.Duration) conf.GRPC {
	g := conf.Default().Server.GRPC
	g.Timeout = timeout
	return g
}

// TestTransportInContext checks what the chain's middleware read of a call
// (transport.FromServerContext), as under Kratos' server: kind grpc, the
// server's endpoint, the full method, the incoming metadata; and that a
// reply header they write reaches the client as the call's header.
func TestTransportInContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got struct {
		ok                          bool
		kind                        transport.Kind
		endpoint, operation, header string
		values                      []string
	}
	conn, endpoint := serveUsers(t, testGRPC(time.Second), func(next kmiddleware.Handler) kmiddleware.Handler {
		return func(ctx context.Context, req any) (any, error) {
			tr, ok := transport.FromServerContext(ctx)
			got.ok = ok
			if ok {
				got.kind, got.endpoint, got.operation = tr.Kind(), tr.Endpoint(), tr.Operation()
				got.header = tr.RequestHeader().Get("X-Test")
				got.values = tr.RequestHeader().Values("x-test")
				tr.ReplyHeader().Set("x-reply", "yes")
			}
			return next(ctx, req)
		}
	})

	var header metadata.MD
	ctx = metadata.AppendToOutgoingContext(ctx, "x-test", "one", "x-test", "two")
	reply, err := userv1.NewUserServiceClient(conn).GetUser(ctx, &userv1.GetUserRequest{Id: "u1"}, grpc.Header(&header))
	if err != nil || reply.GetUser().GetId() != "u1" {
		t.Fatalf("GetUser = %v, %v", reply, err)
	}
	if !got.ok {
		t.Fatal("no server transport in the middleware's context")
	}
	if got.kind != transport.KindGRPC || got.endpoint != endpoint || got.operation != userv1.UserService_GetUser_FullMethodName {
		t.Errorf("transport kind %q endpoint %q operation %q, want grpc, %q, %q",
			got.kind, got.endpoint, got.operation, endpoint, userv1.UserService_GetUser_FullMethodName)
	}
	if got.header != "one" || len(got.values) != 2 || got.values[1] != "two" {
		t.Errorf("request header x-test: Get %q Values %q, want one and [one two]", got.header, got.values)
	}
	if v := header.Get("x-reply"); len(v) != 1 || v[0] != "yes" {
		t.Errorf("reply header x-reply = %q, want [yes]", v)
	}
}

// TestDeadlineCap checks server.grpc.timeout as a cap on the caller's
// deadline: a shorter caller deadline stays, a longer one is cut to the
// cap, and a call without one gets the cap.
func TestDeadlineCap(t *testing.T) {
	const limit = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var left atomic.Int64
	conn, _ := serveUsers(t, testGRPC(limit), func(next kmiddleware.Handler) kmiddleware.Handler {
		return func(ctx context.Context, req any) (any, error) {
			d, ok := ctx.Deadline()
			if !ok {
				left.Store(-1)
			} else {
				left.Store(int64(time.Until(d)))
			}
			return next(ctx, req)
		}
	})
	client := userv1.NewUserServiceClient(conn)
	tests := []struct {
		name     string
		deadline time.Duration // 0: none
		min, max time.Duration
	}{
		{"shorter caller deadline stays", 500 * time.Millisecond, 300 * time.Millisecond, 500 * time.Millisecond},
		{"longer caller deadline is cut", time.Minute, limit - 300*time.Millisecond, limit},
		{"no caller deadline gets the cap", 0, limit - 300*time.Millisecond, limit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			callCtx := context.WithoutCancel(ctx)
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				callCtx, cancel = context.WithTimeout(callCtx, tt.deadline)
				defer cancel()
			}
			if _, err := client.GetUser(callCtx, &userv1.GetUserRequest{Id: "u1"}); err != nil {
				t.Fatal(err)
			}
			got := time.Duration(left.Load())
			if got < tt.min || got > tt.max {
				t.Errorf("time left in the handler %v, want in [%v, %v]", got, tt.min, tt.max)
			}
		})
	}
}

// TestChainCompiledOnce checks that each middleware wraps each method's
// handler once, when the API is registered, never per call; and that the
// chain is the API's only: health calls do not run it.
func TestChainCompiledOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wraps, runs atomic.Int64
	conn, _ := serveUsers(t, testGRPC(time.Second), func(next kmiddleware.Handler) kmiddleware.Handler {
		wraps.Add(1)
		return func(ctx context.Context, req any) (any, error) {
			runs.Add(1)
			return next(ctx, req)
		}
	})
	built := wraps.Load()
	if want := int64(len(userv1.UserService_ServiceDesc.Methods)); built != want {
		t.Fatalf("chain built %d times at registration, want once per method (%d)", built, want)
	}
	client := userv1.NewUserServiceClient(conn)
	const calls = 20
	for range calls {
		if _, err := client.GetUser(ctx, &userv1.GetUserRequest{Id: "u1"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if wraps.Load() != built || runs.Load() != calls {
		t.Errorf("after %d calls and a health check: chain built %d times (want %d), run %d times (want %d)",
			calls, wraps.Load(), built, runs.Load(), calls)
	}
}

// TestNoGoroutinePerCall counts the goroutines started while calls are
// served: gRPC's own per-stream goroutine is the only one (Kratos' server
// started two more per call, for ic.Merge and the timeout cap).
func TestNoGoroutinePerCall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _ := serveUsers(t, testGRPC(time.Minute), func(next kmiddleware.Handler) kmiddleware.Handler { return next })
	client := userv1.NewUserServiceClient(conn)
	if _, err := client.GetUser(ctx, &userv1.GetUserRequest{Id: "u1"}); err != nil { // connect
		t.Fatal(err)
	}
	const calls = 200
	for _, tt := range []struct {
		name string
		ctx  context.Context
	}{
		{"caller deadline shorter than the cap", ctx},
		{"no caller deadline: the cap applies", context.WithoutCancel(ctx)},
	} {
		started := goroutinesCreated()
		for range calls {
			if _, err := client.GetUser(tt.ctx, &userv1.GetUserRequest{Id: "u1"}); err != nil {
				t.Fatal(err)
			}
		}
		// gRPC's stream goroutine, and a little for the runtime's own.
		if per := float64(goroutinesCreated()-started) / calls; per > 1.1 {
			t.Errorf("%s: %.2f goroutines started per call, want 1 (gRPC's stream)", tt.name, per)
		}
	}
}

// TestErrorsKeepTheirReason checks that a Kratos error from the chain
// reaches the client as Kratos' server sent it: its gRPC code, and its
// reason and metadata in the status' ErrorInfo.
func TestErrorsKeepTheirReason(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _ := serveUsers(t, testGRPC(time.Second), func(kmiddleware.Handler) kmiddleware.Handler {
		return func(context.Context, any) (any, error) {
			return nil, kerrors.New(429, "LOAD_SHED", "busy").WithMetadata(map[string]string{"k": "v"})
		}
	})
	_, err := userv1.NewUserServiceClient(conn).GetUser(ctx, &userv1.GetUserRequest{Id: "u1"})
	ke := kerrors.FromError(err)
	if status.Code(err) != codes.ResourceExhausted || ke.Reason != "LOAD_SHED" || ke.Metadata["k"] != "v" {
		t.Fatalf("GetUser = %v (reason %q, metadata %v), want ResourceExhausted, LOAD_SHED, k=v", err, ke.Reason, ke.Metadata)
	}
}

// goroutinesCreated is how many goroutines the process has started.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
