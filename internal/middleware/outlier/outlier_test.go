package outlier_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/selector"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/middleware/outlier"
	"github.com/rampart-go/rampart/internal/rpc"
)

const (
	instA = "127.0.0.1:7001"
	instB = "127.0.0.1:7002"
	instC = "127.0.0.1:7003"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type harness struct {
	d      *outlier.Detector
	ic     grpc.UnaryClientInterceptor
	clock  *clock
	reader *sdkmetric.ManualReader
	nodes  []selector.Node
}

func newHarness(t *testing.T, cfg outlier.Config, addrs ...string) *harness {
	t.Helper()
	c := &clock{now: time.Unix(1_000_000, 0)}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	d := outlier.New("user", cfg, outlier.WithClock(c.Now), outlier.WithMeterProvider(mp), outlier.WithLogger(log.DefaultLogger))
	h := &harness{d: d, ic: d.Interceptor(), clock: c, reader: reader}
	for _, a := range addrs {
		h.nodes = append(h.nodes, selector.NewNode("grpc", a, nil))
	}
	h.pick() // the balancer lists the instances before any attempt
	return h
}

// pick runs the filter as the balancer does and returns the candidates.
func (h *harness) pick() []string {
	var out []string
	for _, n := range h.d.Filter()(context.Background(), h.nodes) {
		out = append(out, n.Address())
	}
	return out
}

// attempt sends one attempt that addr answers with err (and trailer).
func (h *harness) attempt(ctx context.Context, addr string, err error, trailer metadata.MD) error {
	return h.ic(ctx, "/user.v1.UserService/GetUser", nil, nil, nil,
		func(_ context.Context, _ string, _, _ any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
			for _, o := range opts {
				switch o := o.(type) {
				case *grpc.PeerCallOption:
					o.PeerAddr.Addr = tcpAddr(addr)
				case *grpc.TrailerCallOption:
					*o.TrailerAddr = trailer
				}
			}
			return err
		})
}

func tcpAddr(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		panic(err)
	}
	return a
}

func (h *harness) fail(t *testing.T, addr string, n int, code codes.Code) {
	t.Helper()
	for range n {
		_ = h.attempt(context.Background(), addr, status.Error(code, "bad instance"), nil)
	}
}

func (h *harness) ejections(t *testing.T, reason string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != outlier.MetricEjections {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if r, _ := dp.Attributes.Value("reason"); r.AsString() == reason {
					n += dp.Value
				}
			}
		}
	}
	return n
}

func cfg() outlier.Config {
	return outlier.Config{ConsecutiveFailures: 3, BaseEjectionTime: 10 * time.Second, MaxEjectionTime: 25 * time.Second, MaxEjectionPercent: 50}
}

// The codes an instance answering fast but wrong gives (Internal, Unknown,
// ResourceExhausted without pushback, Unavailable) eject it after the
// configured run of failures; the other instance takes every pick.
func TestConsecutiveFailuresEject(t *testing.T) {
	for _, code := range []codes.Code{codes.Internal, codes.Unknown, codes.ResourceExhausted, codes.Unavailable, codes.DeadlineExceeded} {
		t.Run(code.String(), func(t *testing.T) {
			h := newHarness(t, cfg(), instA, instB)
			h.fail(t, instA, 2, code)
			if got := h.pick(); !slices.Equal(got, []string{instA, instB}) {
				t.Fatalf("after 2 failures the pick is %v, want both", got)
			}
			h.fail(t, instA, 1, code)
			if got := h.pick(); !slices.Equal(got, []string{instB}) {
				t.Fatalf("after 3 failures the pick is %v, want %s alone", got, instB)
			}
			if n := h.ejections(t, outlier.ReasonConsecutiveFailures); n != 1 {
				t.Errorf("%s = %d, want 1", outlier.MetricEjections, n)
			}
		})
	}
}

// Answers that say nothing bad about the instance (a client error, the
// caller cancelling, this client's own size limit) do not count, and a
// success resets the run.
func TestOnlyFailuresOfThePeerCount(t *testing.T) {
	h := newHarness(t, cfg(), instA, instB)
	h.fail(t, instA, 2, codes.Internal)
	_ = h.attempt(context.Background(), instA, nil, nil) // success: the run starts again
	h.fail(t, instA, 2, codes.Internal)
	h.fail(t, instA, 5, codes.NotFound)
	h.fail(t, instA, 5, codes.InvalidArgument)
	for range 5 { // a caller no intention allows, as the server's authorization answers it
		_ = h.attempt(context.Background(), instA, rpc.Error(codes.PermissionDenied, rpc.ReasonPermissionDenied, "order may not call user", nil), nil)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for range 5 {
		_ = h.attempt(cancelled, instA, status.Error(codes.Canceled, "caller gone"), nil)
		_ = h.attempt(context.Background(), instA, status.Error(codes.ResourceExhausted, "grpc: received message larger than max (9 vs. 8)"), nil)
	}
	if got := h.pick(); len(got) != 2 {
		t.Fatalf("pick = %v: an instance was ejected for answers that are not its failures", got)
	}
	h.fail(t, instA, 1, codes.Internal) // the NotFounds reset the run: 1 in a row
	if got := h.pick(); len(got) != 2 {
		t.Fatalf("pick = %v after 1 failure in a row", got)
	}
}

// The ejection ends after the base time; failing again ejects it for
// twice as long, up to the maximum; an instance that stays healthy for the
// maximum starts again from the base time.
func TestEjectionTimeGrowsAndDecays(t *testing.T) {
	h := newHarness(t, cfg(), instA, instB)
	eject := func() {
		t.Helper()
		h.fail(t, instA, 3, codes.Internal)
		if got := h.pick(); !slices.Equal(got, []string{instB}) {
			t.Fatalf("pick = %v, want %s ejected", got, instA)
		}
	}
	backAfter := func(d time.Duration) {
		t.Helper()
		h.clock.advance(d - time.Millisecond)
		if got := h.pick(); !slices.Equal(got, []string{instB}) {
			t.Fatalf("%s before the end of a %s ejection the pick is %v", time.Millisecond, d, got)
		}
		h.clock.advance(time.Millisecond)
		if got := h.pick(); len(got) != 2 {
			t.Fatalf("after a %s ejection the pick is %v, want both (the probe)", d, got)
		}
	}
	eject()
	backAfter(10 * time.Second)
	eject()
	backAfter(20 * time.Second)
	eject()
	backAfter(25 * time.Second) // 30 s capped at 25
	h.clock.advance(25 * time.Second)
	_ = h.attempt(context.Background(), instA, nil, nil)
	eject()
	backAfter(10 * time.Second)
}

// A ResourceExhausted with a pushback keeps the instance out for exactly
// the pushback, at the first answer.
func TestPushbackEjectsForItsTime(t *testing.T) {
	h := newHarness(t, cfg(), instA, instB)
	shed, err := status.New(codes.ResourceExhausted, "shed").WithDetails(&errdetails.ErrorInfo{Reason: "LOAD_SHED"})
	if err != nil {
		t.Fatal(err)
	}
	_ = h.attempt(context.Background(), instA, shed.Err(), metadata.Pairs("grpc-retry-pushback-ms", "400"))
	if got := h.pick(); !slices.Equal(got, []string{instB}) {
		t.Fatalf("pick = %v, want %s out for its pushback", got, instA)
	}
	h.clock.advance(400 * time.Millisecond)
	if got := h.pick(); len(got) != 2 {
		t.Fatalf("pick = %v after the pushback, want both", got)
	}
	if n := h.ejections(t, outlier.ReasonPushback); n != 1 {
		t.Errorf("%s{reason=pushback} = %d, want 1", outlier.MetricEjections, n)
	}
}

// Every instance failing is the breaker's case: at most the configured
// share is out, never the last one, and a single instance never.
func TestNeverMoreThanTheShare(t *testing.T) {
	h := newHarness(t, cfg(), instA, instB)
	h.fail(t, instA, 3, codes.Internal)
	h.fail(t, instB, 10, codes.Internal)
	if got := h.d.Ejected(); !slices.Equal(got, []string{instA}) {
		t.Fatalf("ejected %v of two failing instances, want only the first", got)
	}
	if got := h.pick(); !slices.Equal(got, []string{instB}) {
		t.Fatalf("pick = %v", got)
	}

	alone := newHarness(t, cfg(), instA)
	alone.fail(t, instA, 10, codes.Internal)
	if got := alone.d.Ejected(); len(got) != 0 {
		t.Fatalf("the only instance was ejected: %v", got)
	}

	three := newHarness(t, outlier.Config{ConsecutiveFailures: 1, BaseEjectionTime: time.Second, MaxEjectionTime: time.Second, MaxEjectionPercent: 0}, instA, instB, instC)
	three.fail(t, instA, 1, codes.Internal)
	three.fail(t, instB, 1, codes.Internal)
	if got := three.d.Ejected(); !slices.Equal(got, []string{instA}) {
		t.Fatalf("max_ejection_percent 0 of three ejected %v, want exactly one", got)
	}
}

func TestOffByConfig(t *testing.T) {
	off := cfg()
	off.ConsecutiveFailures = 0
	h := newHarness(t, off, instA, instB)
	h.fail(t, instA, 50, codes.Internal)
	if got := h.pick(); len(got) != 2 {
		t.Fatalf("ejection off, yet pick = %v", got)
	}
}

func TestValidate(t *testing.T) {
	if err := outlier.DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tt := range []struct {
		mut  func(*outlier.Config)
		want string
	}{
		{func(c *outlier.Config) { c.ConsecutiveFailures = -1 }, "consecutive_failures: "},
		{func(c *outlier.Config) { c.BaseEjectionTime = 0 }, "base_ejection_time: "},
		{func(c *outlier.Config) { c.MaxEjectionTime = time.Second }, "max_ejection_time: "},
		{func(c *outlier.Config) { c.MaxEjectionPercent = 101 }, "max_ejection_percent: "},
	} {
		c := outlier.DefaultConfig()
		tt.mut(&c)
		if err := c.Validate(); err == nil || err.Error()[:len(tt.want)] != tt.want {
			t.Errorf("Validate(%+v) = %v, want it to start with %q", c, err, tt.want)
		}
	}
}

// The call during which an instance is ejected carries the event on its
// span, naming the instance.
func TestEjectionIsOnTheSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	h := newHarness(t, cfg(), instA, instB)
	for i := range 3 {
		ctx, span := tp.Tracer("test").Start(context.Background(), "call")
		_ = h.attempt(ctx, instA, status.Error(codes.Internal, "bad"), nil)
		span.End()
		events := rec.Ended()[i].Events()
		if got := len(events) == 1 && events[0].Name == "outlier.ejected"; got != (i == 2) {
			t.Fatalf("call %d: events %v; want the ejection on the third call only", i+1, events)
		}
	}
	for _, a := range rec.Ended()[2].Events()[0].Attributes {
		if a.Key == "server.address" && a.Value.AsString() != instA {
			t.Errorf("event names %s, want %s", a.Value.AsString(), instA)
		}
	}
}

// A pushback during an ejection can only lengthen it.
func TestPushbackExtendsAnEjection(t *testing.T) {
	h := newHarness(t, cfg(), instA, instB)
	h.fail(t, instA, 3, codes.Internal) // out for 10 s
	h.clock.advance(5 * time.Second)
	_ = h.attempt(context.Background(), instA, status.Error(codes.ResourceExhausted, "shed"), metadata.Pairs("grpc-retry-pushback-ms", "20000"))
	h.clock.advance(20*time.Second - time.Millisecond)
	if got := h.pick(); !slices.Equal(got, []string{instB}) {
		t.Fatalf("pick = %v before the pushback's end, want %s still out", got, instA)
	}
	h.clock.advance(time.Millisecond)
	if got := h.pick(); len(got) != 2 {
		t.Fatalf("pick = %v after the pushback's end, want both", got)
	}
}

// A success costs one allocation while no instance has a failure on
// record, and again once an instance that failed without being ejected has
// answered well: the healthy path does not name the instance.
func TestHealthyAttemptCostsOneAllocation(t *testing.T) {
	h := newHarness(t, cfg(), instA, instB)
	addr := tcpAddr(instA)
	ok := func(_ context.Context, _ string, _, _ any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
		for _, o := range opts {
			if p, isPeer := o.(*grpc.PeerCallOption); isPeer {
				p.PeerAddr.Addr = addr
			}
		}
		return nil
	}
	ctx := context.Background()
	call := func() { _ = h.ic(ctx, "/user.v1.UserService/GetUser", nil, nil, nil, ok) }
	if got := testing.AllocsPerRun(100, call); got > 1 {
		t.Fatalf("healthy attempt: %v allocs, want 1", got)
	}
	h.fail(t, instA, 2, codes.Internal) // on record, one short of ejection
	call()                              // answers well: the record goes
	if got := testing.AllocsPerRun(100, call); got > 1 {
		t.Fatalf("healthy attempt after a recovered failure: %v allocs, want 1", got)
	}
	h.fail(t, instA, 2, codes.Internal)
	if got := h.pick(); len(got) != 2 {
		t.Fatalf("pick = %v: two failures after a success must not eject (threshold 3)", got)
	}
}

// Under retry, which passes an rpc.AttemptReport in the call options, the
// interceptor reads the report gRPC filled instead of asking for its own:
// a healthy attempt allocates nothing, and failures count against the
// instance the report names.
func TestAttemptWithAReportCostsNothing(t *testing.T) {
	h := newHarness(t, cfg(), instA, instB)
	report := &rpc.AttemptReport{}
	peerOpt, trailerOpt := report.Options()
	opts := []grpc.CallOption{trailerOpt, peerOpt}
	addr := tcpAddr(instA)
	var err error
	invoker := func(_ context.Context, _ string, _, _ any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
		if rpc.ReportIn(opts) != report {
			t.Fatal("the interceptor did not pass the report on")
		}
		report.Peer.Addr = addr
		return err
	}
	ctx := context.Background()
	call := func() { _ = h.ic(ctx, "/user.v1.UserService/GetUser", nil, nil, nil, invoker, opts...) }
	if got := testing.AllocsPerRun(100, call); got != 0 {
		t.Fatalf("healthy attempt with a report: %v allocs, want 0", got)
	}
	err = status.Error(codes.Unavailable, "bad instance")
	for range 3 {
		call()
	}
	if got := h.pick(); !slices.Equal(got, []string{instB}) {
		t.Fatalf("pick = %v after 3 failures reported against %s, want it ejected", got, instA)
	}
}
