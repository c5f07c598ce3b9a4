package server

import (
	"context"
	"testing"
	"time"

	kmiddleware "github.com/go-kratos/kratos/v2/middleware"
	"github.com/go-kratos/kratos/v2/transport"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/service"
)

// TestServerTransportKey checks that Kratos' key was learnt, so a call's
// context carries its transport without a context of its own.
func TestServerTransportKey(t *testing.T) {
	if serverTransportKey == nil {
		t.Fatal("transport.FromServerContext no longer asks the context for its key: calls pay NewServerContext")
	}
	c := newServerCall(context.Background(), "grpc://x", "/a.B/C", nil)
	type key struct{}
	ctx := context.WithValue(c.withTransport(), key{}, 1) // a middleware's value on top
	tr, ok := transport.FromServerContext(ctx)
	if !ok || tr != &c.tr {
		t.Fatalf("FromServerContext = %v, %v; want the call's transport", tr, ok)
	}
	if _, ok := transport.FromClientContext(ctx); ok {
		t.Fatal("a server call's context answers for a client transport")
	}
}

// TestCallCost pins what the interceptor costs a call, the chain and the
// handler aside: looking the compiled chain up allocates nothing (that it
// is built once is TestChainCompiledOnce's); a chained call allocates its context (which
// is its transport) and nothing else while the caller's deadline is the
// shorter; an unchained one (health) allocates nothing.
func TestCallCost(t *testing.T) {
	g := conf.Default().Server.GRPC
	g.Timeout = time.Minute
	s := NewGRPCServer(g, middleware.ServerChain{func(next kmiddleware.Handler) kmiddleware.Handler { return next }},
		health.NewServer(), nil, NewStreams(), service.API{Desc: &userv1.UserService_ServiceDesc, Impl: userv1.UnimplementedUserServiceServer{}}, nil)
	t.Cleanup(s.Server.Stop)
	method := userv1.UserService_GetUser_FullMethodName
	if s.methods[method] == nil {
		t.Fatalf("no compiled chain for %s", method)
	}
	if n := testing.AllocsPerRun(100, func() { _ = s.methods[method] }); n != 0 {
		t.Errorf("looking the chain up: %v allocations, want 0", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, reply := &userv1.GetUserRequest{}, &userv1.GetUserReply{}
	handler := func(context.Context, any) (any, error) { return reply, nil }
	for _, tt := range []struct {
		method string
		want   float64
	}{
		{method, 1},
		{healthpb.Health_Check_FullMethodName, 0},
	} {
		info := &grpc.UnaryServerInfo{FullMethod: tt.method}
		if n := testing.AllocsPerRun(100, func() { _, _ = s.unary(ctx, req, info, handler) }); n != tt.want {
			t.Errorf("%s: %v allocations per call, want %v", tt.method, n, tt.want)
		}
	}
}
