package faults_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/middleware"
	"github.com/go-kratos/kratos/v2/transport"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/middleware/faults"
	"github.com/rampart-go/rampart/internal/rpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	getUser    = "/user.v1.UserService/GetUser"
	createUser = "/user.v1.UserService/CreateUser"
)

// fakeTransport is the server transport Kratos puts in the context; the
// injector only reads the operation.
type fakeTransport struct{ op string }

func (fakeTransport) Kind() transport.Kind            { return transport.KindGRPC }
func (fakeTransport) Endpoint() string                { return "grpc://127.0.0.1:0" }
func (t fakeTransport) Operation() string             { return t.op }
func (fakeTransport) RequestHeader() transport.Header { return nil }
func (fakeTransport) ReplyHeader() transport.Header   { return nil }

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// call returns a context for a request to method.
func call(ctx context.Context, method string) context.Context {
	return transport.NewServerContext(ctx, fakeTransport{op: method})
}

// handler counts its runs and answers "reply" or err.
type handler struct {
	runs atomic.Int64
	err  error
}

func (h *handler) handle(context.Context, any) (any, error) {
	h.runs.Add(1)
	if h.err != nil {
		return nil, h.err
	}
	return "reply", nil
}

// fixedRand always draws v.
func fixedRand(v float64) faults.Option {
	return faults.WithRand(func() float64 { return v })
}

func mustNew(t testing.TB, initial map[string]faults.Fault, opts ...faults.Option) *faults.Injector {
	t.Helper()
	inj, err := faults.New(initial, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return inj
}

func wrap(inj *faults.Injector, h *handler) middleware.Handler {
	return inj.Middleware()(h.handle)
}

func TestPercentBoundsWithInjectedRand(t *testing.T) {
	tests := []struct {
		name    string
		percent float64
		draw    float64
		aborted bool
	}{
		{"0% never, even on the lowest draw", 0, 0, false},
		{"100% always, even on the highest draw", 100, 0.9999999, true},
		{"30% hits a draw of 0.29", 30, 0.29, true},
		{"30% misses a draw of 0.30", 30, 0.30, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj := mustNew(t, map[string]faults.Fault{
				getUser: {Abort: &faults.Abort{Percent: tt.percent, Code: "UNAVAILABLE"}},
			}, fixedRand(tt.draw))
			h := &handler{}
			_, err := wrap(inj, h)(call(testContext(t), getUser), nil)
			if aborted := status.Code(err) == codes.Unavailable; aborted != tt.aborted {
				t.Fatalf("aborted = %v (err %v), want %v", aborted, err, tt.aborted)
			}
			if ran := h.runs.Load() == 1; ran == tt.aborted {
				t.Fatalf("handler ran = %v with aborted = %v", ran, tt.aborted)
			}
		})
	}
}

func TestDelayHonoursContext(t *testing.T) {
	tests := []struct {
		name string
		end  func(context.Context) (context.Context, context.CancelFunc)
		want codes.Code
	}{
		{"deadline", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 50*time.Millisecond)
		}, codes.DeadlineExceeded},
		{"cancel", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, codes.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj := mustNew(t, map[string]faults.Fault{
				getUser: {Delay: &faults.Delay{Percent: 100, Duration: time.Minute}},
			})
			h := &handler{}
			ctx, cancel := tt.end(call(testContext(t), getUser))
			defer cancel()

			start := time.Now()
			_, err := wrap(inj, h)(ctx, nil)
			if elapsed := time.Since(start); elapsed > 10*time.Second {
				t.Fatalf("delay ignored the context: returned after %v", elapsed)
			}
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code = %v (err %v), want %v", got, err, tt.want)
			}
			if h.runs.Load() != 0 {
				t.Fatal("handler ran after the caller's context ended")
			}
			if got := inj.State().Injected[getUser]; got.Delay != 1 || got.Interrupted != 1 {
				t.Fatalf("injected = %+v, want 1 delay, 1 interrupted", got)
			}
		})
	}
}

func TestDelayThenHandler(t *testing.T) {
	const d = 30 * time.Millisecond
	inj := mustNew(t, map[string]faults.Fault{getUser: {Delay: &faults.Delay{Percent: 100, Duration: d}}})
	h := &handler{}
	start := time.Now()
	reply, err := wrap(inj, h)(call(testContext(t), getUser), nil)
	if err != nil || reply != "reply" {
		t.Fatalf("got (%v, %v), want the handler's reply", reply, err)
	}
	if elapsed := time.Since(start); elapsed < d {
		t.Fatalf("returned after %v, want >= %v", elapsed, d)
	}
	if got := inj.State().Injected[getUser]; got.Delay != 1 || got.Interrupted != 0 {
		t.Fatalf("injected = %+v, want 1 delay, 0 interrupted", got)
	}
}

func TestAbortCodeAndReason(t *testing.T) {
	for name, want := range map[string]codes.Code{
		"UNAVAILABLE":        codes.Unavailable,
		"Unavailable":        codes.Unavailable,
		"DEADLINE_EXCEEDED":  codes.DeadlineExceeded,
		"DeadlineExceeded":   codes.DeadlineExceeded,
		"resource_exhausted": codes.ResourceExhausted,
		"INTERNAL":           codes.Internal,
		"NOT_FOUND":          codes.NotFound,
	} {
		t.Run(name, func(t *testing.T) {
			inj := mustNew(t, map[string]faults.Fault{getUser: {Abort: &faults.Abort{Percent: 100, Code: name}}})
			h := &handler{}
			_, err := wrap(inj, h)(call(testContext(t), getUser), nil)
			if got := status.Code(err); got != want {
				t.Fatalf("code = %v, want %v", got, want)
			}
			if got := kerrors.Reason(err); got != rpc.ReasonFaultInjected {
				t.Fatalf("reason = %q, want %q", got, rpc.ReasonFaultInjected)
			}
			if h.runs.Load() != 0 {
				t.Fatal("handler ran for an abort before it")
			}
		})
	}
}

func TestAbortAfterRunsHandlerOnceThenErrors(t *testing.T) {
	inj := mustNew(t, map[string]faults.Fault{
		getUser: {Abort: &faults.Abort{Percent: 100, Code: "UNAVAILABLE", After: true}},
	})
	h := &handler{}
	reply, err := wrap(inj, h)(call(testContext(t), getUser), nil)
	if n := h.runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
	if reply != nil {
		t.Fatalf("reply = %v, want it discarded", reply)
	}
	if status.Code(err) != codes.Unavailable || kerrors.Reason(err) != rpc.ReasonFaultInjected {
		t.Fatalf("err = %v, want Unavailable/%s", err, rpc.ReasonFaultInjected)
	}

	// A handler that fails on its own did not take effect: its error stands
	// and no abort is counted.
	own := status.Error(codes.NotFound, "no such user")
	h = &handler{err: own}
	if _, err := wrap(inj, h)(call(testContext(t), getUser), nil); !errors.Is(err, own) {
		t.Fatalf("err = %v, want the handler's own %v", err, own)
	}
	if got := inj.State().Injected[getUser].Abort; got != 1 {
		t.Fatalf("aborts = %d, want 1", got)
	}
}

func TestSeenAndMatching(t *testing.T) {
	inj := mustNew(t, nil)
	h := &handler{}
	next := wrap(inj, h)
	ctx := testContext(t)
	for range 3 {
		if _, err := next(call(ctx, getUser), nil); err != nil {
			t.Fatalf("no faults configured, got %v", err)
		}
	}
	if _, err := next(call(ctx, createUser), nil); err != nil {
		t.Fatalf("no faults configured, got %v", err)
	}

	// "*" covers every method without its own entry; an entry overrides
	// "*" whole, here with a fault that does nothing.
	if err := inj.Set(map[string]faults.Fault{
		faults.AllMethods: {Abort: &faults.Abort{Percent: 100, Code: "INTERNAL"}},
		getUser:           {},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := next(call(ctx, getUser), nil); err != nil {
		t.Fatalf("%s has its own (empty) fault, got %v", getUser, err)
	}
	if _, err := next(call(ctx, createUser), nil); status.Code(err) != codes.Internal {
		t.Fatalf("%s should get the * fault, got %v", createUser, err)
	}

	if got := inj.Seen(getUser); got != 4 {
		t.Fatalf("Seen(%s) = %d, want 4", getUser, got)
	}
	if got := inj.Seen(createUser); got != 2 {
		t.Fatalf("Seen(%s) = %d, want 2", createUser, got)
	}
	if got := inj.Seen("/never.Called/Method"); got != 0 {
		t.Fatalf("Seen of an uncalled method = %d", got)
	}
	if n := h.runs.Load(); n != 5 {
		t.Fatalf("handler ran %d times, want 5", n)
	}

	inj.Clear()
	if _, err := next(call(ctx, createUser), nil); err != nil {
		t.Fatalf("after Clear, got %v", err)
	}
}

func TestNewRejectsInvalidNamingMethodAndField(t *testing.T) {
	tests := []struct {
		name   string
		key    string
		fault  faults.Fault
		naming string
	}{
		{"percent above 100", getUser, faults.Fault{Abort: &faults.Abort{Percent: 101, Code: "UNAVAILABLE"}}, "abort.percent"},
		{"negative percent", getUser, faults.Fault{Delay: &faults.Delay{Percent: -1, Duration: time.Second}}, "delay.percent"},
		{"unknown code", getUser, faults.Fault{Abort: &faults.Abort{Percent: 10, Code: "UNAVAIL"}}, "abort.code"},
		{"OK is no abort", getUser, faults.Fault{Abort: &faults.Abort{Percent: 10, Code: "OK"}}, "abort.code"},
		{"empty code", getUser, faults.Fault{Abort: &faults.Abort{Percent: 10}}, "abort.code"},
		{"negative delay", getUser, faults.Fault{Delay: &faults.Delay{Percent: 10, Duration: -time.Second}}, "delay.duration"},
		{"method without slash", "user.v1.UserService/GetUser", faults.Fault{}, "method"},
		{"service only", "/user.v1.UserService", faults.Fault{}, "method"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := faults.New(map[string]faults.Fault{tt.key: tt.fault})
			if err == nil {
				t.Fatal("New accepted an invalid fault")
			}
			if !strings.Contains(err.Error(), tt.key) || !strings.Contains(err.Error(), tt.naming) {
				t.Fatalf("error %q should name %q and %q", err, tt.key, tt.naming)
			}
		})
	}

	// Set keeps the faults in force when the new ones are invalid.
	inj := mustNew(t, map[string]faults.Fault{getUser: {Abort: &faults.Abort{Percent: 5, Code: "UNAVAILABLE"}}})
	if err := inj.Set(map[string]faults.Fault{getUser: {Abort: &faults.Abort{Percent: 500, Code: "UNAVAILABLE"}}}); err == nil {
		t.Fatal("Set accepted percent 500")
	}
	if got := inj.Faults()[getUser].Abort; got == nil || got.Percent != 5 {
		t.Fatalf("faults after a rejected Set = %+v, want the old ones", inj.Faults())
	}
}

func TestInjectedCounter(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	inj := mustNew(t, map[string]faults.Fault{getUser: {
		Delay: &faults.Delay{Percent: 100, Duration: time.Millisecond},
		Abort: &faults.Abort{Percent: 100, Code: "UNAVAILABLE"},
	}}, faults.WithMeterProvider(mp))
	next := wrap(inj, &handler{})
	for range 3 {
		_, _ = next(call(testContext(t), getUser), nil)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(testContext(t), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || m.Name != faults.MetricInjected {
				continue
			}
			for _, dp := range sum.DataPoints {
				method, _ := dp.Attributes.Value("method")
				kind, _ := dp.Attributes.Value("kind")
				got[method.AsString()+" "+kind.AsString()] += dp.Value
			}
		}
	}
	if got[getUser+" delay"] != 3 || got[getUser+" abort"] != 3 || len(got) != 2 {
		t.Fatalf("%s = %v, want 3 delays and 3 aborts on %s", faults.MetricInjected, got, getUser)
	}
}

// TestNoFaultsAllocatesNothing is the allocation gate for the hot path; the
// benchmark reports the same number.
func TestNoFaultsAllocatesNothing(t *testing.T) {
	inj := mustNew(t, nil)
	next := inj.Middleware()(func(context.Context, any) (any, error) { return nil, nil })
	ctx := call(testContext(t), getUser)
	if n := testing.AllocsPerRun(1000, func() { _, _ = next(ctx, nil) }); n != 0 {
		t.Fatalf("%v allocs per call with no faults, want 0", n)
	}
}

func BenchmarkMiddlewareNoFaults(b *testing.B) {
	inj := mustNew(b, nil)
	next := inj.Middleware()(func(context.Context, any) (any, error) { return nil, nil })
	ctx := call(testContext(b), getUser)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = next(ctx, nil)
	}
}

// BenchmarkMiddlewareOtherMethodFaulted is the cost for a method without a
// fault while another method has one: the rule lookup is added.
func BenchmarkMiddlewareOtherMethodFaulted(b *testing.B) {
	inj := mustNew(b, map[string]faults.Fault{createUser: {Abort: &faults.Abort{Percent: 100, Code: "UNAVAILABLE"}}})
	next := inj.Middleware()(func(context.Context, any) (any, error) { return nil, nil })
	ctx := call(testContext(b), getUser)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = next(ctx, nil)
	}
}
