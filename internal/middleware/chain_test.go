package middleware

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/middleware/faults"
	"github.com/rampart-go/rampart/internal/middleware/retry"
	"github.com/rampart-go/rampart/internal/middleware/shedding"
	"github.com/rampart-go/rampart/internal/rpc"
)

// syncRecorder keeps every log line as text; the server logs from its own
// goroutines.
type syncRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *syncRecorder) Log(level log.Level, kv ...any) error {
	var b strings.Builder
	b.WriteString(level.String())
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, b.String())
	return nil
}

func (r *syncRecorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

// panicking is a user service whose CreateUser has a bug.
type panicking struct {
	userv1.UnimplementedUserServiceServer
}

func (panicking) CreateUser(context.Context, *userv1.CreateUserRequest) (*userv1.CreateUserReply, error) {
	panic("nil map write in handler")
}

// TestPanicIsAccessLoggedAsInternal serves a handler that panics behind the
// server chain, in process over real gRPC: the caller gets Internal, the
// access log has the call with that code, and no log line, Kratos' global
// logger included, holds the request.
func TestPanicIsAccessLoggedAsInternal(t *testing.T) {
	const secret = "ada-secret-email@example.com"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := &syncRecorder{}
	// Kratos' own lines go to the global logger; set before the server
	// starts and restored after it stopped, so no goroutine races the swap.
	prev := log.GetLogger()
	log.SetLogger(rec)        //nolint:forbidigo // the test reads what Kratos logs; restored below
	defer log.SetLogger(prev) //nolint:forbidigo // as above

	inj, err := NewFaults(faults.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := NewServerChain(shedding.DefaultConfig(), rec, inj, nil, Authorization{})
	if err != nil {
		t.Fatal(err)
	}
	srv := kgrpc.NewServer(kgrpc.Address("127.0.0.1:0"), kgrpc.CustomHealth())
	srv.Use("/"+userv1.UserService_ServiceDesc.ServiceName+"/*", chain...)
	userv1.RegisterUserServiceServer(srv, panicking{})
	endpoint, err := srv.Endpoint()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Start(context.Background()) }()
	defer func() {
		_ = srv.Stop(context.Background())
		if serveErr := <-served; serveErr != nil {
			t.Errorf("serve: %v", serveErr)
		}
	}()

	conn, err := grpc.NewClient(endpoint.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_, err = userv1.NewUserServiceClient(conn).CreateUser(ctx, &userv1.CreateUserRequest{Name: "Ada", Email: secret})
	if status.Code(err) != codes.Internal || kerrors.Reason(err) != rpc.ReasonPanic {
		t.Fatalf("CreateUser = %v, want Internal with reason %s", err, rpc.ReasonPanic)
	}

	logged := rec.text()
	if !strings.Contains(logged, "kind=server operation=/user.v1.UserService/CreateUser code=Internal") {
		t.Errorf("no access-log line with code Internal for the call that panicked:\n%s", logged)
	}
	if !strings.Contains(logged, "panic=nil map write in handler") {
		t.Errorf("panic not logged:\n%s", logged)
	}
	if strings.Contains(logged, secret) {
		t.Errorf("the request is in the log:\n%s", logged)
	}
}

// TestPoliciesAreCompiledOnce checks what a call costs to find its policy:
// a method override and the client's own policy are the values compiled
// when the chain was built, found without allocating.
func TestPoliciesAreCompiledOnce(t *testing.T) {
	const get, list = "/user.v1.UserService/GetUser", "/user.v1.UserService/ListUsers"
	c := DefaultClientConfig()
	override := c.Policy
	override.Timeout = 300 * time.Millisecond
	c.Methods = map[string]MethodPolicy{get: {Policy: override}}
	p := compilePolicies(c)

	tests := []struct {
		method string
		want   *MethodPolicy
	}{
		{get, p.methods[get]},
		{list, p.client},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			if got := p.of(tt.method); got != tt.want || p.of(tt.method) != got {
				t.Fatalf("of(%s) = %p, want the compiled %p every time", tt.method, got, tt.want)
			}
			if allocs := testing.AllocsPerRun(100, func() { _ = p.of(tt.method).Retry }); allocs != 0 {
				t.Fatalf("finding the policy allocates %v times per call, want 0", allocs)
			}
		})
	}
	if p.of(get).Timeout != 300*time.Millisecond || p.of(list).Timeout != c.Timeout {
		t.Fatalf("timeouts %v/%v, want the override's and the client's", p.of(get).Timeout, p.of(list).Timeout)
	}
}

// TestHedgingIsCompiledAway checks that a client none of whose methods is
// hedged builds its retry interceptor without hedging, so its calls pay
// nothing for it; one hedged method turns it on for the client.
func TestHedgingIsCompiledAway(t *testing.T) {
	const get = "/user.v1.UserService/GetUser"
	c := DefaultClientConfig()
	c.Methods = map[string]MethodPolicy{get: {Policy: c.Policy, Hedging: retry.DefaultHedgingConfig()}}
	if compilePolicies(c).hedged {
		t.Error("a client whose hedging is off compiled with hedging")
	}
	c.Methods[get] = MethodPolicy{Policy: c.Policy, Hedging: retry.HedgingConfig{Delay: 50 * time.Millisecond, MaxAttempts: 2}}
	p := compilePolicies(c)
	if !p.hedged || p.of(get).Hedging.Delay != 50*time.Millisecond || p.of("/user.v1.UserService/ListUsers").Hedging.Enabled() {
		t.Errorf("hedged %v, GetUser %+v: want hedging on GetUser only", p.hedged, p.of(get).Hedging)
	}
}

// TestClientChainHasNoKratosMiddleware checks that the client chain gives
// Kratos' client transport no middleware, so it builds no middleware chain
// per call (two allocations), and that its outermost interceptor writes the
// access log line the middleware wrote.
func TestClientChainHasNoKratosMiddleware(t *testing.T) {
	rec := &syncRecorder{}
	c := DefaultClientConfig()
	c.Target = "discovery:///user"
	chain, err := NewClients(ClientConfigs{"user": c}, rec, nil).For("user")
	if err != nil {
		t.Fatal(err)
	}
	if len(chain.Middleware) != 0 {
		t.Fatalf("%d Kratos middleware, want none", len(chain.Middleware))
	}
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	if err := chain.Interceptors[0](t.Context(), "/user.v1.UserService/GetUser", nil, nil, nil, invoker); err != nil {
		t.Fatal(err)
	}
	if logged := rec.text(); !strings.Contains(logged, "kind=client operation=/user.v1.UserService/GetUser code=OK") {
		t.Errorf("the outermost interceptor wrote no access-log line:\n%s", logged)
	}
}
