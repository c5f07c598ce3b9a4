package telemetry_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/baggage"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/middleware/retry"
	"github.com/rampart-go/rampart/internal/mtls"
	"github.com/rampart-go/rampart/internal/mtls/mtlstest"
	"github.com/rampart-go/rampart/internal/telemetry"
)

const (
	otelgrpcScope   = "go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	telemetryScope  = "github.com/rampart-go/rampart/internal/telemetry"
	getUser         = "user.v1.UserService/GetUser"
	getUserProfile  = "user.v1.UserService/GetUserProfile"
	tenantBaggage   = "tenant"
	tenantFromTests = "acme"
)

// backend is the downstream user service: GetUser fails its first `fail`
// calls with Unavailable, and records what each call received.
type backend struct {
	userv1.UnimplementedUserServiceServer

	fail int

	mu    sync.Mutex
	calls []received
}

// received is what one server call saw of the caller's context.
type received struct {
	traceparent string
	span        trace.SpanContext
	tenant      string
}

func (b *backend) GetUser(ctx context.Context, _ *userv1.GetUserRequest) (*userv1.GetUserReply, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, received{
		traceparent: strings.Join(md.Get("traceparent"), ","),
		span:        trace.SpanContextFromContext(ctx),
		tenant:      baggage.FromContext(ctx).Member(tenantBaggage).Value(),
	})
	if len(b.calls) <= b.fail {
		return nil, status.Error(codes.Unavailable, "attempt refused by the test")
	}
	return &userv1.GetUserReply{User: &userv1.User{Id: "u1"}}, nil
}

func (b *backend) received() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// frontend serves GetUserProfile by calling the backend's GetUser with the
// handler's context, as a Rampart handler calls another service.
type frontend struct {
	userv1.UnimplementedUserServiceServer

	users userv1.UserServiceClient
}

func (f *frontend) GetUserProfile(ctx context.Context, req *userv1.GetUserProfileRequest) (*userv1.GetUserProfileReply, error) {
	reply, err := f.users.GetUser(ctx, &userv1.GetUserRequest{Id: req.GetId()})
	if err != nil {
		return nil, err
	}
	return &userv1.GetUserProfileReply{User: reply.GetUser()}, nil
}

// twoAttempts stands in for the retry interceptor: it invokes again, with
// the context it was given, when the first attempt is Unavailable.
func twoAttempts(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if status.Code(err) != codes.Unavailable {
		return err
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// find returns the one span with the given name, kind and scope.
func find(t *testing.T, spans []sdktrace.ReadOnlySpan, name string, kind trace.SpanKind, scope string) []sdktrace.ReadOnlySpan {
	t.Helper()
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name && s.SpanKind() == kind && s.InstrumentationScope().Name == scope {
			out = append(out, s)
		}
	}
	return out
}

func one(t *testing.T, spans []sdktrace.ReadOnlySpan, what string) sdktrace.ReadOnlySpan {
	t.Helper()
	if len(spans) != 1 {
		t.Fatalf("%s: got %d spans, want 1", what, len(spans))
	}
	return spans[0]
}

func isChild(child, parent sdktrace.ReadOnlySpan) bool {
	return child.Parent().SpanID() == parent.SpanContext().SpanID()
}

// The whole span tree of a call that crosses two services and is retried
// on the second hop:
//
//	logical GetUserProfile (client, this package)
//	└ attempt GetUserProfile (client, otelgrpc)
//	  └ server GetUserProfile (server, otelgrpc)
//	    └ logical GetUser (client, this package)
//	      ├ attempt 1 GetUser, Error UNAVAILABLE
//	      │ └ server GetUser, Error
//	      └ attempt 2 GetUser, OK
//	        └ server GetUser
func TestOneTraceAcrossServicesAndAttempts(t *testing.T) {
	clearOTelEnv(t)
	tel, rec := newTelemetry(t, telemetry.Config{})

	back := &backend{fail: 1}
	backAddr := serve(t, tel, back)
	front := &frontend{users: dial(t, tel, backAddr, tel.LogicalSpan("user"), twoAttempts)}
	frontAddr := serve(t, tel, front)
	client := dial(t, tel, frontAddr, tel.LogicalSpan("user"), twoAttempts)

	bag, err := baggage.Parse(tenantBaggage + "=" + tenantFromTests)
	if err != nil {
		t.Fatal(err)
	}
	ctx := baggage.ContextWithBaggage(testCtx(t), bag)
	if _, err := client.GetUserProfile(ctx, &userv1.GetUserProfileRequest{Id: "u1"}); err != nil {
		t.Fatalf("GetUserProfile: %v", err)
	}

	spans := waitSpans(t, rec, 8)
	traceID := spans[0].SpanContext().TraceID()
	for _, s := range spans {
		if s.SpanContext().TraceID() != traceID {
			t.Fatalf("spans in more than one trace:\n%s", describe(spans))
		}
	}

	logicalProfile := one(t, find(t, spans, getUserProfile, trace.SpanKindClient, telemetryScope), "logical GetUserProfile")
	attemptProfile := one(t, find(t, spans, getUserProfile, trace.SpanKindClient, otelgrpcScope), "attempt GetUserProfile")
	serverProfile := one(t, find(t, spans, getUserProfile, trace.SpanKindServer, otelgrpcScope), "server GetUserProfile")
	logicalUser := one(t, find(t, spans, getUser, trace.SpanKindClient, telemetryScope), "logical GetUser")
	attempts := find(t, spans, getUser, trace.SpanKindClient, otelgrpcScope)
	servers := find(t, spans, getUser, trace.SpanKindServer, otelgrpcScope)
	if len(attempts) != 2 || len(servers) != 2 {
		t.Fatalf("got %d attempt and %d server GetUser spans, want 2 and 2:\n%s", len(attempts), len(servers), describe(spans))
	}

	if logicalProfile.Parent().IsValid() {
		t.Errorf("logical GetUserProfile has parent %s, want a root span", logicalProfile.Parent().SpanID())
	}
	for _, link := range []struct {
		name          string
		child, parent sdktrace.ReadOnlySpan
	}{
		{"attempt GetUserProfile under logical GetUserProfile", attemptProfile, logicalProfile},
		{"server GetUserProfile under its attempt", serverProfile, attemptProfile},
		{"logical GetUser under the server span of the handler that made it", logicalUser, serverProfile},
		{"attempt 1 under logical GetUser", attempts[0], logicalUser},
		{"attempt 2 under logical GetUser", attempts[1], logicalUser},
	} {
		if !isChild(link.child, link.parent) {
			t.Errorf("%s: parent is %s, want %s:\n%s", link.name, link.child.Parent().SpanID(), link.parent.SpanContext().SpanID(), describe(spans))
		}
	}
	if !serverProfile.Parent().IsRemote() {
		t.Error("server GetUserProfile's parent is not remote: the context did not come from the wire")
	}

	// Each server span is the child of exactly one attempt: the attempt's
	// own W3C header reached the server.
	for _, srv := range servers {
		if !isChild(srv, attempts[0]) && !isChild(srv, attempts[1]) {
			t.Errorf("server GetUser span %s has parent %s, not an attempt span", srv.SpanContext().SpanID(), srv.Parent().SpanID())
		}
	}

	var failed, succeeded sdktrace.ReadOnlySpan
	for _, a := range attempts {
		if a.Status().Code == otelcodes.Error {
			failed = a
		} else {
			succeeded = a
		}
	}
	if failed == nil || succeeded == nil {
		t.Fatalf("want one failed and one successful attempt, got statuses %v and %v", attempts[0].Status(), attempts[1].Status())
	}
	if got := attr(failed, "rpc.response.status_code"); got != "UNAVAILABLE" {
		t.Errorf("failed attempt rpc.response.status_code = %q, want UNAVAILABLE", got)
	}
	if got := attr(succeeded, "rpc.response.status_code"); got != "OK" {
		t.Errorf("second attempt rpc.response.status_code = %q, want OK", got)
	}

	// The call as a whole succeeded: the logical span says so, whatever
	// its attempts went through.
	if logicalUser.Status().Code != otelcodes.Unset {
		t.Errorf("logical GetUser status = %v, want Unset", logicalUser.Status())
	}
	for key, want := range map[string]string{
		"rpc.system.name":          "grpc",
		"rpc.method":               getUser,
		"rpc.response.status_code": "OK",
		"rampart.target":           "user",
	} {
		if got := attr(logicalUser, key); got != want {
			t.Errorf("logical GetUser %s = %q, want %q", key, got, want)
		}
	}

	calls := back.received()
	if len(calls) != 2 {
		t.Fatalf("backend got %d calls, want 2", len(calls))
	}
	for i, c := range calls {
		if c.tenant != tenantFromTests {
			t.Errorf("call %d: baggage %s = %q, want %q (propagated over two hops)", i+1, tenantBaggage, c.tenant, tenantFromTests)
		}
		// traceparent is 00-<trace id>-<parent span id>-<flags>; the parent
		// must be one of the attempts and the handler's span the server's.
		parts := strings.Split(c.traceparent, "-")
		if len(parts) != 4 || parts[1] != traceID.String() {
			t.Errorf("call %d: traceparent %q does not carry trace %s", i+1, c.traceparent, traceID)
			continue
		}
		if parts[2] != attempts[0].SpanContext().SpanID().String() && parts[2] != attempts[1].SpanContext().SpanID().String() {
			t.Errorf("call %d: traceparent parent %s is not an attempt span", i+1, parts[2])
		}
		if c.span.SpanID() != servers[0].SpanContext().SpanID() && c.span.SpanID() != servers[1].SpanContext().SpanID() {
			t.Errorf("call %d: handler context carries span %s, not a server span", i+1, c.span.SpanID())
		}
	}
}

// With the real retry interceptor below it, the logical span of a call
// whose every attempt fails ends in Error with the code, carries the retry
// event, and parents every attempt.
func TestLogicalSpanWithRetryInterceptor(t *testing.T) {
	clearOTelEnv(t)
	tel, rec := newTelemetry(t, telemetry.Config{})
	addr := serve(t, tel, &backend{fail: 100})
	policy := func(string) retry.Config {
		return retry.Config{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Multiplier: 2}
	}
	client := dial(t, tel, addr, tel.LogicalSpan("user"), retry.Client("user", policy, retry.NewBudget(retry.BudgetConfig{Ratio: 0.5, MinPerSecond: 10})))

	_, err := client.GetUser(testCtx(t), &userv1.GetUserRequest{Id: "u1"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("GetUser: %v, want Unavailable", err)
	}

	spans := waitSpans(t, rec, 5) // logical, 2 attempts, 2 server spans
	logical := one(t, find(t, spans, getUser, trace.SpanKindClient, telemetryScope), "logical GetUser")
	if logical.Status().Code != otelcodes.Error {
		t.Errorf("logical status = %v, want Error", logical.Status())
	}
	if got := attr(logical, "rpc.response.status_code"); got != "UNAVAILABLE" {
		t.Errorf("logical rpc.response.status_code = %q, want UNAVAILABLE", got)
	}
	if !slices.ContainsFunc(logical.Events(), func(e sdktrace.Event) bool { return e.Name == "retry" }) {
		t.Errorf("logical span has no retry event; events: %v", logical.Events())
	}
	attempts := find(t, spans, getUser, trace.SpanKindClient, otelgrpcScope)
	if len(attempts) != 2 {
		t.Fatalf("got %d attempt spans, want 2:\n%s", len(attempts), describe(spans))
	}
	for i, a := range attempts {
		if !isChild(a, logical) {
			t.Errorf("attempt %d is not a child of the logical span", i+1)
		}
		if a.Status().Code != otelcodes.Error || attr(a, "rpc.response.status_code") != "UNAVAILABLE" {
			t.Errorf("attempt %d: status %v code %q, want Error UNAVAILABLE", i+1, a.Status(), attr(a, "rpc.response.status_code"))
		}
	}
}

// OTEL_SEMCONV_STABILITY_OPT_IN switches the logical span's attribute names
// the same way it switches otelgrpc's.
func TestLogicalSpanSemconvOptIn(t *testing.T) {
	tests := []struct {
		optIn string
		want  map[string]string
	}{
		{optIn: "", want: map[string]string{
			"rpc.system.name": "grpc", "rpc.method": getUser, "rpc.response.status_code": "UNAVAILABLE",
			"rpc.system": "", "rpc.service": "", "rpc.grpc.status_code": "",
		}},
		{optIn: "rpc/old", want: map[string]string{
			"rpc.system": "grpc", "rpc.service": "user.v1.UserService", "rpc.method": "GetUser", "rpc.grpc.status_code": "14",
			"rpc.system.name": "", "rpc.response.status_code": "",
		}},
		{optIn: "http,rpc/dup", want: map[string]string{
			"rpc.system": "grpc", "rpc.service": "user.v1.UserService", "rpc.grpc.status_code": "14",
			"rpc.system.name": "grpc", "rpc.method": getUser, "rpc.response.status_code": "UNAVAILABLE",
		}},
	}
	for _, tt := range tests {
		t.Run("optin="+tt.optIn, func(t *testing.T) {
			clearOTelEnv(t)
			t.Setenv("OTEL_SEMCONV_STABILITY_OPT_IN", tt.optIn)
			tel, rec := newTelemetry(t, telemetry.Config{})
			client := dial(t, tel, serve(t, tel, &backend{fail: 1}), tel.LogicalSpan("user"))

			_, _ = client.GetUser(testCtx(t), &userv1.GetUserRequest{Id: "u1"})

			spans := waitSpans(t, rec, 3)
			logical := one(t, find(t, spans, getUser, trace.SpanKindClient, telemetryScope), "logical GetUser")
			for key, want := range tt.want {
				if got := attr(logical, key); got != want {
					t.Errorf("%s = %q, want %q", key, got, want)
				}
			}
		})
	}
}

// A sampled-out call records no span but still has IDs, so log lines and
// downstream services can be correlated.
func TestUnsampledCallsKeepTraceIDs(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv(telemetry.EnvTracesSampler, telemetry.SamplerAlwaysOff)
	tel, rec := newTelemetry(t, telemetry.Config{})
	back := &backend{}
	client := dial(t, tel, serve(t, tel, back), tel.LogicalSpan("user"))

	ctx, span := tel.TracerProvider().Tracer("test").Start(testCtx(t), "root")
	if _, err := client.GetUser(ctx, &userv1.GetUserRequest{Id: "u1"}); err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	span.End()

	if n := len(rec.Ended()); n != 0 {
		t.Errorf("recorded %d spans with always_off, want 0", n)
	}
	calls := back.received()
	if len(calls) != 1 || calls[0].span.TraceID() != span.SpanContext().TraceID() {
		t.Errorf("server saw %+v, want trace %s", calls, span.SpanContext().TraceID())
	}
}

// Over mTLS the server span names the calling service in
// service.peer.name; a plaintext call's span has no such attribute.
func TestServerSpanNamesTheCaller(t *testing.T) {
	clearOTelEnv(t)
	tel, rec := newTelemetry(t, telemetry.Config{Sampler: telemetry.SamplerAlwaysOn})
	ca := mtlstest.NewCA(t, "11111111-2222-3333-4444-555555555555.consul")
	addr := serve(t, tel, &backend{}, grpc.Creds(credentials.NewTLS(mtls.ServerConfig(ca.Source(t, "user")))))
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(mtls.ClientConfig(ca.Source(t, "order"), "user"))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	if _, err = userv1.NewUserServiceClient(cc).GetUser(testCtx(t), &userv1.GetUserRequest{Id: "u1"}); err != nil {
		t.Fatal(err)
	}
	plain, err := grpc.NewClient(serve(t, tel, &backend{}), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plain.Close() })
	if _, err := userv1.NewUserServiceClient(plain).GetUser(testCtx(t), &userv1.GetUserRequest{Id: "u1"}); err != nil {
		t.Fatal(err)
	}

	servers := find(t, waitSpans(t, rec, 2), getUser, trace.SpanKindServer, otelgrpcScope)
	if len(servers) != 2 {
		t.Fatalf("%d server spans, want 2", len(servers))
	}
	var got []string
	for _, s := range servers {
		got = append(got, attr(s, "service.peer.name"))
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"", "order"}) {
		t.Errorf("service.peer.name of the mTLS and the plaintext call: %q, want order and none", got)
	}
}
