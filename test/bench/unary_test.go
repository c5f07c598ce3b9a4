package bench_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/middleware/circuitbreaker"
	"github.com/go-kratos/kratos/v2/middleware/recovery"
	"github.com/go-kratos/kratos/v2/middleware/tracing"
	"github.com/go-kratos/kratos/v2/selector"
	"github.com/go-kratos/kratos/v2/selector/p2c"
	"github.com/go-kratos/kratos/v2/selector/wrr"
	"github.com/go-kratos/kratos/v2/transport"
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	userbiz "github.com/rampart-go/rampart/internal/biz/user"
	"github.com/rampart-go/rampart/internal/conf"
	userdata "github.com/rampart-go/rampart/internal/data/user"
	"github.com/rampart-go/rampart/internal/gateway"
	"github.com/rampart-go/rampart/internal/leakcheck"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/mtls"
	"github.com/rampart-go/rampart/internal/mtls/mtlstest"
	"github.com/rampart-go/rampart/internal/server"
	usersvc "github.com/rampart-go/rampart/internal/service/user"
	"github.com/rampart-go/rampart/internal/telemetry"
	"github.com/rampart-go/rampart/test/bench"
)

// Kratos servers log through the global logger when they start and stop;
// the benchmark output is parsed, so that goes nowhere. The stock Kratos
// case needs Kratos' own globals, so this process does not run
// server.Setup; it sets the two globals it compares itself.
func TestMain(m *testing.M) {
	log.SetLogger(discard) //nolint:forbidigo // silence Kratos' own lines; the output is parsed
	leakcheck.Main(m)
}

// discard is the logger of every case: the chains still build and format
// their log lines (Rampart logs every call), but writing them costs nothing,
// so the figures measure the chains rather than a terminal.
var discard = log.NewStdLogger(io.Discard)

// warmUpCalls are made before timing, so connection set-up, the health
// check stream and first-call caches (breaker entry, idempotency lookup)
// are not in the figures.
const warmUpCalls = 200

// callTimeout is the deadline every call carries. A deadline is what real
// callers send, and giving every case the same one means each pays the same
// grpc-timeout header and server timer; its length only has to outlast the
// benchmark.
const callTimeout = time.Hour

// fixture is one case, ready to call.
type fixture struct {
	client userv1.UserServiceClient
	userID string
	// spans counts ended spans, nil when the case does not trace.
	spans *atomic.Int64
	// spansPerCall is how many spans one call should record.
	spansPerCall int
	// addr is the server's address, where a case's setup checks it.
	addr string
}

type benchCase struct {
	name  string
	setup func(tb testing.TB) fixture
}

// cases returns the cases in report order.
func cases() []benchCase {
	return []benchCase{
		{name: bench.CaseGRPC, setup: bareGRPC},
		{name: bench.CaseKratos, setup: kratosStock},
		{name: bench.CaseRampart, setup: func(tb testing.TB) fixture { return rampart(tb, true) }},
		{name: bench.CaseRampartUnsampled, setup: func(tb testing.TB) fixture { return rampart(tb, false) }},
		{name: bench.CaseHTTP, setup: overHTTP},
		{name: bench.CaseMTLS, setup: overMTLS},
	}
}

// BenchmarkUnary is one sequential GetUser call per iteration through each
// case. B/op and allocs/op count both ends, since client and server share
// the process; so does goroutines/op, the goroutines started per call,
// each of which costs a wake-up and a context switch on the way.
func BenchmarkUnary(b *testing.B) {
	for _, c := range cases() {
		b.Run(c.name, func(b *testing.B) {
			f, ctx, req := warmUp(b, c)
			b.ReportAllocs()
			started := goroutinesCreated()
			for b.Loop() {
				if _, err := f.client.GetUser(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(goroutinesCreated()-started)/float64(b.N), "goroutines/op")
		})
	}
}

// warmUp sets case c up and makes warmUpCalls through it; it returns the
// fixture, the context every call carries and the request.
func warmUp(b *testing.B, c benchCase) (fixture, context.Context, *userv1.GetUserRequest) {
	b.Helper()
	f := c.setup(b)
	ctx, cancel := context.WithTimeout(b.Context(), callTimeout)
	b.Cleanup(cancel)
	req := &userv1.GetUserRequest{Id: f.userID}
	for range warmUpCalls {
		if _, err := f.client.GetUser(ctx, req); err != nil {
			b.Fatalf("warm-up call: %v", err)
		}
	}
	return f, ctx, req
}

// TestCases checks what the benchmark relies on: every case answers with
// the stored user, a case that traces really records its spans (a tracer
// that records nothing would flatter it), and the unsampled case records
// none. It runs in `make test`, so a change that breaks a case is caught
// there.
func TestCases(t *testing.T) {
	const calls = 3
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			f := c.setup(t)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			for range calls {
				reply, err := f.client.GetUser(ctx, &userv1.GetUserRequest{Id: f.userID})
				if err != nil {
					t.Fatalf("GetUser: %v", err)
				}
				if got := reply.GetUser().GetId(); got != f.userID {
					t.Fatalf("GetUser returned user %q, want %q", got, f.userID)
				}
			}
			if f.spans == nil {
				return
			}
			// Instrumentation may end the server span after the client has
			// its reply (otelgrpc's stats handlers did), so wait for it.
			want := int64(f.spansPerCall * calls)
			for f.spans.Load() < want && ctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			if got := f.spans.Load(); got != want {
				t.Errorf("%d spans ended after %d calls, want %d (%d per call)", got, calls, want, f.spansPerCall)
			}
		})
	}
}

// users returns the handler every case serves, the user service over an
// in-memory store holding one user, and that user's ID.
func users(tb testing.TB) (*usersvc.Service, string) {
	tb.Helper()
	store := userdata.NewStore()
	u, err := store.Create(tb.Context(), &userbiz.User{Name: "Ada", Email: "ada@example.com"})
	if err != nil {
		tb.Fatalf("create user: %v", err)
	}
	// GetUser never asks for order history.
	return usersvc.NewService(userbiz.NewUsecase(store, nil), discard), u.ID
}

// listen binds a free loopback port.
func listen(tb testing.TB) net.Listener {
	tb.Helper()
	var lc net.ListenConfig
	lis, err := lc.Listen(tb.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	return lis
}

// bareGRPC is case (a): no interceptor, no middleware, on either side.
func bareGRPC(tb testing.TB) fixture {
	svc, id := users(tb)
	lis := listen(tb)
	srv := grpc.NewServer()
	userv1.RegisterUserServiceServer(srv, svc)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	tb.Cleanup(func() {
		srv.Stop()
		<-served
	})

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return fixture{client: userv1.NewUserServiceClient(conn), userID: id}
}

// kratosStock is case (b): Kratos' own middleware for the same jobs, with
// Kratos' defaults left alone (1 s server timeout, 2 s client timeout,
// Kratos' own health server, round-robin balancer).
func kratosStock(tb testing.TB) fixture {
	svc, id := users(tb)
	tp, spans := tracerProvider(tb, sdktrace.AlwaysSample())

	lis := listen(tb)
	srv := kgrpc.NewServer(
		kgrpc.Listener(lis),
		kgrpc.Middleware(recovery.Recovery(), tracing.Server(tracing.WithTracerProvider(tp))),
	)
	userv1.RegisterUserServiceServer(srv, svc)
	start(tb, srv)

	// Kratos' balancer reads the global selector when it builds a picker;
	// the Rampart case switches it to P2C, so put back Kratos' default.
	selector.SetGlobalSelector(wrr.NewBuilder()) //nolint:forbidigo // the stock baseline runs Kratos' default
	conn, err := kgrpc.DialInsecure(tb.Context(),
		kgrpc.WithEndpoint(lis.Addr().String()),
		kgrpc.WithMiddleware(
			recovery.Recovery(),
			circuitbreaker.Client(),
			tracing.Client(tracing.WithTracerProvider(tp)),
		),
	)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	// A client and a server span per call.
	return fixture{client: userv1.NewUserServiceClient(conn), userID: id, spans: spans, spansPerCall: 2}
}

// rampart is case (c), or (c') when sampled is false: the user service's
// gRPC server and the connection the order service opens to it, built by
// the constructors the services call (cmd/user/wire_gen.go,
// server.Dialer), from the defaults the config files document, tracing
// included. Only the target differs: the server's loopback address instead
// of Consul discovery, so no registry is involved.
func rampart(tb testing.TB, sampled bool) fixture {
	return rampartOver(tb, sampled, nil, nil)
}

// overMTLS is case (e): case (c) with both ends in mtls mode, the server
// as user and the client as order, certificates from one test CA.
func overMTLS(tb testing.TB) fixture {
	ca := mtlstest.NewCA(tb, "bench.consul")
	ident := server.NewFixedIdentity("user", ca.Source(tb, "user"), ca.ServiceID("user"), allowAll{})
	f := rampartOver(tb, true, ident, ca.Source(tb, "order"))
	// The case measures TLS only if the server refuses anything else.
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(tb.Context(), 5*time.Second)
	defer cancel()
	if _, err := userv1.NewUserServiceClient(conn).GetUser(ctx, &userv1.GetUserRequest{Id: f.userID}); err == nil {
		tb.Fatal("the mtls case's server answered a plaintext call")
	}
	return f
}

// allowAll is an authorizer whose every answer is yes, as a cached allow
// intention is.
type allowAll struct{}

func (allowAll) Authorize(context.Context, string, string) (bool, string, error) {
	return true, "", nil
}

// rampartOver builds case (c), (c') or (e): in plaintext when ident is nil,
// else the server with ident and the client presenting src.
func rampartOver(tb testing.TB, sampled bool, ident *server.Identity, src mtls.Source) fixture {
	c, lis, id, tel, spans := rampartServer(tb, sampled, ident)
	// Without a discovery, the Dialer dials the target as it is.
	user := c.Clients["user"]
	user.Target = lis.Addr().String()
	c.Clients["user"] = user
	// P2C, as server.Setup chooses for the services; set here because the
	// Kratos case may have put round robin back since.
	selector.SetGlobalSelector(p2c.NewBuilder()) //nolint:forbidigo // server.Setup runs once; the stock case reset it
	conn, closeConn, err := server.NewDialer(nil, middleware.NewClients(c.Clients, discard, tel), src).Dial("user")
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(closeConn)
	f := fixture{client: userv1.NewUserServiceClient(conn), userID: id, spans: spans, addr: lis.Addr().String()}
	if sampled {
		// The logical client span, one attempt span, the server span.
		f.spansPerCall = 3
	}
	return f
}

// rampartServer serves the user service as case (c) does, and returns its
// config (with clients.user, target still to set), its listener, the
// user's ID, the telemetry and the span counter.
func rampartServer(tb testing.TB, sampled bool, ident *server.Identity) (*conf.Bootstrap, net.Listener, string, *telemetry.Telemetry, *atomic.Int64) {
	tb.Helper()
	svc, id := users(tb)
	c := conf.Default()
	c.Service.Name = "user"
	c.Telemetry = telemetry.Config{TracesExporter: telemetry.ExporterNone, Sampler: telemetry.SamplerParentBasedAlwaysOn}
	if !sampled {
		c.Telemetry.Sampler = telemetry.SamplerParentBasedAlwaysOff
	}
	user := middleware.DefaultClientConfig()
	user.Target = "discovery:///user"
	c.Clients = middleware.ClientConfigs{"user": user}
	clearOTELEnv(tb)
	if err := c.Validate(); err != nil {
		tb.Fatalf("config: %v", err)
	}
	tel, spans := rampartTelemetry(tb, c)

	inj, err := middleware.NewFaults(c.Server.Faults, tel.MeterProvider())
	if err != nil {
		tb.Fatalf("faults: %v", err)
	}
	chain, err := middleware.NewServerChain(c.Server.Shedding, discard, inj, tel.MeterProvider(), server.NewAuthorization(ident))
	if err != nil {
		tb.Fatalf("server chain: %v", err)
	}
	srv := server.NewGRPCServer(c.Server.GRPC, chain, server.NewHealth(), tel, server.NewStreams(), usersvc.NewAPI(svc), ident)
	lis := listen(tb)
	// As server.App does: hand over the listener bound beforehand.
	srv.Bind(lis, nil)
	start(tb, srv)
	return c, lis, id, tel, spans
}

// overHTTP is case (d): case (c)'s server behind the gateway, built as
// server.App builds it, called with net/http as a client outside the
// cluster would.
func overHTTP(tb testing.TB) fixture {
	c, grpcLis, id, _, spans := rampartServer(tb, true, nil)
	gw := gateway.New(c.Server.Gateway, userv1.RegisterUserServiceHandler)
	if err := gw.Connect(grpcLis.Addr().String(), nil); err != nil {
		tb.Fatalf("gateway: %v", err)
	}
	lis := listen(tb)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gw.Serve(lis)
	}()
	tr := &http.Transport{}
	tb.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
		<-served
	})
	// The gateway's call opens no span of its own: the server span only.
	return fixture{client: &httpUsers{base: "http://" + lis.Addr().String(), client: &http.Client{Transport: tr}}, userID: id, spans: spans, spansPerCall: 1}
}

// httpUsers is a UserServiceClient whose GetUser is a GET /v1/users/{id}
// with its JSON reply decoded; the benchmark calls nothing else.
type httpUsers struct {
	userv1.UserServiceClient
	base   string
	client *http.Client
}

func (h *httpUsers) GetUser(ctx context.Context, req *userv1.GetUserRequest, _ ...grpc.CallOption) (*userv1.GetUserReply, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+"/v1/users/"+req.GetId(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.client.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d %s", hreq.URL.Path, resp.StatusCode, body)
	}
	reply := &userv1.GetUserReply{}
	return reply, protojson.Unmarshal(body, reply)
}

// rampartTelemetry sets up telemetry as server.NewTelemetry does, from
// c.Telemetry, with a span processor that counts next to the (absent)
// exporter. The chains get its meter provider passed, as in the services.
func rampartTelemetry(tb testing.TB, c *conf.Bootstrap) (*telemetry.Telemetry, *atomic.Int64) {
	tb.Helper()
	p := &countSpans{}
	tel, err := telemetry.New(tb.Context(), c.Telemetry, telemetry.ResourceInfo{
		ServiceName:    c.Service.Name,
		ServiceVersion: c.Service.Version,
		InstanceID:     c.Service.Name + "-bench",
	}, telemetry.WithSpanProcessor(p), telemetry.WithLookup(os.LookupEnv))
	if err != nil {
		tb.Fatalf("telemetry: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(ctx)
	})
	return tel, &p.ended
}

// clearOTELEnv empties the OTEL_* variables that would override the
// sampler or the exporter the Rampart case configures.
func clearOTELEnv(tb testing.TB) {
	for _, v := range []string{
		telemetry.EnvTracesExporter, telemetry.EnvTracesSampler, telemetry.EnvTracesSamplerArg,
		telemetry.EnvOTLPEndpoint, telemetry.EnvOTLPTracesEndpoint,
	} {
		tb.Setenv(v, "")
	}
}

// tracerProvider returns an SDK TracerProvider with sampler and a span
// processor that only counts, so spans are really built, recorded and ended
// but no exporter's cost is measured.
func tracerProvider(tb testing.TB, sampler sdktrace.Sampler) (trace.TracerProvider, *atomic.Int64) {
	tb.Helper()
	p := &countSpans{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithSpanProcessor(p))
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(ctx)
	})
	return tp, &p.ended
}

// countSpans is a span processor that counts ended spans and keeps nothing.
type countSpans struct{ ended atomic.Int64 }

var _ sdktrace.SpanProcessor = (*countSpans)(nil)

func (*countSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (p *countSpans) OnEnd(sdktrace.ReadOnlySpan)                   { p.ended.Add(1) }
func (*countSpans) Shutdown(context.Context) error                  { return nil }
func (*countSpans) ForceFlush(context.Context) error                { return nil }

// goroutinesCreated is how many goroutines the process has started.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// start serves srv until the test ends. Kratos' server merges every call's
// context with the one given to Start, so it is one without cancellation,
// as server.App gave it.
func start(tb testing.TB, srv transport.Server) {
	tb.Helper()
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Start(context.WithoutCancel(tb.Context()))
	}()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
		<-served
	})
}
