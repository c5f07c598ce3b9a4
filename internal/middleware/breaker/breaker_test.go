package breaker_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/middleware/breaker"
	"github.com/rampart-go/rampart/internal/rpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	target  = "user"
	methodA = "/user.v1.UserService/GetUser"
	methodB = "/user.v1.UserService/CreateUser"
	// maxCalls bounds every loop that drives a breaker open. With the test
	// config a breaker opens after about Request failures; this is 10x that.
	maxCalls = 1000
)

// testConfig keeps the aegis defaults except for a long window, so a slow
// run under -race cannot see its counts slide out of the window mid-test.
func testConfig(string) breaker.Config {
	c := breaker.DefaultConfig()
	c.Window = time.Minute
	return c
}

// fakeInvoker answers every call with err and counts calls.
type fakeInvoker struct {
	err   error
	calls int
}

func (f *fakeInvoker) invoke(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	f.calls++
	return f.err
}

func newClient(t *testing.T) (grpc.UnaryClientInterceptor, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mp.Shutdown(ctx)
	})
	return breaker.Client(target, testConfig, breaker.WithMeterProvider(mp)), reader
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openBreaker drives method with Unavailable until the breaker rejects a
// call, and returns that rejection. It fails the test if the invoker was
// called for the rejected call or the breaker never opens.
func openBreaker(ctx context.Context, t *testing.T, ic grpc.UnaryClientInterceptor, method string) error {
	t.Helper()
	inv := &fakeInvoker{err: status.Error(codes.Unavailable, "connection refused")}
	for i := 0; i < maxCalls; i++ {
		before := inv.calls
		err := ic(ctx, method, nil, nil, nil, inv.invoke)
		if inv.calls == before {
			return err
		}
	}
	t.Fatalf("breaker still calling the server after %d Unavailable answers", maxCalls)
	return nil
}

func TestOpensUnderSustainedFailuresAndFailsFast(t *testing.T) {
	ctx := testContext(t)
	ic, reader := newClient(t)
	err := openBreaker(ctx, t, ic, methodA)

	if !rpc.IsCircuitOpen(err) {
		t.Fatalf("IsOpen(%v) = false", err)
	}
	if got := status.Code(err); got != codes.Unavailable {
		t.Fatalf("code = %v, want Unavailable", got)
	}
	ke := kerrors.FromError(err)
	if ke.Reason != rpc.ReasonCircuitOpen {
		t.Fatalf("kratos reason = %q, want %q", ke.Reason, rpc.ReasonCircuitOpen)
	}
	if ke.Metadata["target"] != target || ke.Metadata["method"] != methodA {
		t.Fatalf("metadata = %v, want target %q and method %q", ke.Metadata, target, methodA)
	}
	if rpc.Classify(ctx, err).PeerFault {
		t.Fatal("the breaker's own rejection classified as a failure of the peer")
	}

	rm := collect(t, reader)
	if n := counterValue(rm, breaker.MetricRejections, methodA); n < 1 {
		t.Fatalf("%s{method=%s} = %d, want >= 1", breaker.MetricRejections, methodA, n)
	}
	if s, ok := gaugeValue(rm, breaker.MetricState, methodA); !ok || s != 1 {
		t.Fatalf("%s{method=%s} = %d (reported %v), want 1", breaker.MetricState, methodA, s, ok)
	}
}

func TestClientErrorsNeverOpen(t *testing.T) {
	ctx := testContext(t)
	ic, reader := newClient(t)
	for _, code := range []codes.Code{codes.NotFound, codes.InvalidArgument, codes.AlreadyExists, codes.FailedPrecondition, codes.PermissionDenied} {
		inv := &fakeInvoker{err: status.Error(code, "client error")}
		if code == codes.PermissionDenied { // as the server's authorization answers it
			inv.err = rpc.Error(code, rpc.ReasonPermissionDenied, "order may not call user", nil)
		}
		for i := 0; i < maxCalls; i++ {
			if err := ic(ctx, methodA, nil, nil, nil, inv.invoke); rpc.IsCircuitOpen(err) {
				t.Fatalf("breaker opened after %d %v answers", i, code)
			}
		}
		if inv.calls != maxCalls {
			t.Fatalf("%v: invoker called %d times, want %d", code, inv.calls, maxCalls)
		}
	}
	rm := collect(t, reader)
	if s, ok := gaugeValue(rm, breaker.MetricState, methodA); !ok || s != 0 {
		t.Fatalf("%s = %d (reported %v), want 0", breaker.MetricState, s, ok)
	}
}

// TestCancellationNotCounted proves cancellations count as neither failure
// nor success: a thousand of them do not open the breaker, and afterwards
// it opens as fast as a fresh one. Had they counted as successes, it would
// need about 700 failures (total > accepts/0.6) before the first rejection.
func TestCancellationNotCounted(t *testing.T) {
	ctx := testContext(t)
	ic, _ := newClient(t)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	inv := &fakeInvoker{err: status.Error(codes.Canceled, "context canceled")}
	// Some transports report a cancelled call as Unavailable: the context
	// is the authority, so that must not count as a failure either.
	invUnavailable := &fakeInvoker{err: status.Error(codes.Unavailable, "transport closing")}
	for i := 0; i < maxCalls; i++ {
		if err := ic(ctx, methodA, nil, nil, nil, inv.invoke); rpc.IsCircuitOpen(err) {
			t.Fatalf("breaker opened after %d Canceled answers", i)
		}
		if err := ic(cancelled, methodA, nil, nil, nil, invUnavailable.invoke); rpc.IsCircuitOpen(err) {
			t.Fatalf("breaker opened after %d calls with a cancelled context", i)
		}
	}

	inv = &fakeInvoker{err: status.Error(codes.Unavailable, "down")}
	for {
		before := inv.calls
		_ = ic(ctx, methodA, nil, nil, nil, inv.invoke)
		if inv.calls == before {
			break
		}
		if int64(inv.calls) > 3*breaker.DefaultConfig().Request {
			t.Fatalf("no rejection after %d failures: cancellations were counted as successes", inv.calls)
		}
	}
}

func TestPerMethodIsolation(t *testing.T) {
	ctx := testContext(t)
	ic, reader := newClient(t)
	_ = openBreaker(ctx, t, ic, methodA)

	inv := &fakeInvoker{}
	for i := 0; i < maxCalls; i++ {
		if err := ic(ctx, methodB, nil, nil, nil, inv.invoke); err != nil {
			t.Fatalf("call %d to %s failed: %v", i, methodB, err)
		}
	}
	if inv.calls != maxCalls {
		t.Fatalf("invoker called %d times for %s, want %d", inv.calls, methodB, maxCalls)
	}
	rm := collect(t, reader)
	if n := counterValue(rm, breaker.MetricRejections, methodB); n != 0 {
		t.Fatalf("%s{method=%s} = %d, want 0", breaker.MetricRejections, methodB, n)
	}
	if s, _ := gaugeValue(rm, breaker.MetricState, methodB); s != 0 {
		t.Fatalf("%s{method=%s} = %d, want 0", breaker.MetricState, methodB, s)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*breaker.Config)
		want string // "" when valid
	}{
		{"defaults", func(*breaker.Config) {}, ""},
		{"tuned", func(c *breaker.Config) {
			*c = breaker.Config{Success: 0.5, Request: 20, Window: time.Second, Bucket: 5}
		}, ""},
		{"success above 1", func(c *breaker.Config) { c.Success = 1.5 }, "success: must be in (0, 1], got 1.5"},
		{"success negative", func(c *breaker.Config) { c.Success = -0.1 }, "success: must be in (0, 1]"},
		{"success NaN", func(c *breaker.Config) { c.Success = math.NaN() }, "success: must be a finite number, got NaN"},
		{"no request floor", func(c *breaker.Config) { c.Request = 0 }, "request: must be > 0"},
		{"negative window", func(c *breaker.Config) { c.Window = -time.Second }, "window: must be > 0"},
		{"no buckets", func(c *breaker.Config) { c.Bucket = 0 }, "bucket: must be > 0"},
		{"window shorter than its buckets", func(c *breaker.Config) { c.Window, c.Bucket = 5, 10 }, "window: 5ns is too short for 10 buckets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := breaker.DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate(%+v) = %v, want nil", c, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate(%+v) = %v, want %q", c, err, tt.want)
			}
		})
	}
}

func collect(t *testing.T, r *sdkmetric.ManualReader) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(testContext(t), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	return rm
}

func hasMethod(set attribute.Set, method string) bool {
	tv, okT := set.Value("target")
	mv, okM := set.Value("method")
	return okT && okM && tv.AsString() == target && mv.AsString() == method
}

func counterValue(rm metricdata.ResourceMetrics, name, method string) int64 {
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
				for _, dp := range sum.DataPoints {
					if hasMethod(dp.Attributes, method) {
						n += dp.Value
					}
				}
			}
		}
	}
	return n
}

func gaugeValue(rm metricdata.ResourceMetrics, name, method string) (int64, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == name {
				for _, dp := range g.DataPoints {
					if hasMethod(dp.Attributes, method) {
						return dp.Value, true
					}
				}
			}
		}
	}
	return 0, false
}

// BenchmarkClientAllowed is the cost the breaker adds to a call it lets
// through, for the chain's allocation budget. The 2 allocs/op are aegis'
// (sre.Breaker.summary's closure captures its results).
func BenchmarkClientAllowed(b *testing.B) {
	ic := breaker.Client(target, nil)
	invoke := (&fakeInvoker{}).invoke // bound once: a method value allocates
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = ic(ctx, methodA, nil, nil, nil, invoke)
	}
}

// TestProbesOfAnOpenBreakerAreNotRetried: once the breaker rejects, the
// calls it still lets through are probes; a failed probe answers
// CIRCUIT_OPEN (retry will not repeat it) with the backend's message, a
// successful one passes through untouched.
func TestProbesOfAnOpenBreakerAreNotRetried(t *testing.T) {
	ctx := testContext(t)
	ic, _ := newClient(t)
	_ = openBreaker(ctx, t, ic, methodA)

	down := &fakeInvoker{err: status.Error(codes.Unavailable, "connection refused")}
	probes := 0
	for i := 0; i < maxCalls && probes == 0; i++ {
		err := ic(ctx, methodA, nil, nil, nil, down.invoke)
		if down.calls == 0 {
			continue // rejected without a probe
		}
		probes++
		if !rpc.IsCircuitOpen(err) {
			t.Fatalf("failed probe = %v, want CIRCUIT_OPEN so retry does not repeat it", err)
		}
		ke := kerrors.FromError(err)
		if ke.Message != "connection refused" || ke.Metadata["probe"] != "failed" || ke.Metadata["cause"] != "Unavailable" {
			t.Fatalf("failed probe lost its cause: message %q metadata %v", ke.Message, ke.Metadata)
		}
	}
	if probes == 0 {
		t.Fatalf("the open breaker let no probe through in %d calls", maxCalls)
	}

	up := &fakeInvoker{}
	for i := 0; i < maxCalls && up.calls == 0; i++ {
		if err := ic(ctx, methodA, nil, nil, nil, up.invoke); up.calls > 0 && err != nil {
			t.Fatalf("successful probe = %v, want nil", err)
		}
	}
	if up.calls == 0 {
		t.Fatal("no probe reached the recovered backend")
	}

	// A method whose breaker never rejected keeps its real error, so the
	// retry policy decides.
	other := &fakeInvoker{err: status.Error(codes.Unavailable, "blip")}
	if err := ic(ctx, methodB, nil, nil, nil, other.invoke); rpc.IsCircuitOpen(err) || status.Code(err) != codes.Unavailable {
		t.Fatalf("first failure of a closed breaker = %v, want the plain Unavailable", err)
	}
}
