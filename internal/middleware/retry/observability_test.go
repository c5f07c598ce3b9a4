package retry_test

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/middleware/retry"
)

// observed returns a meter provider and a tracer provider that keep what
// they record for the test to read, shut down when it ends.
func observed(t *testing.T) (*sdkmetric.ManualReader, *sdkmetric.MeterProvider, *tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() {
		_ = mp.Shutdown(testCtx(t))
		_ = tp.Shutdown(testCtx(t))
	})
	return reader, mp, recorder, tp
}

func TestRetriesAreObservable(t *testing.T) {
	reader, mp, recorder, tp := observed(t)
	h := newHarness(filled(retry.Config{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}), 0.5,
		retry.WithMeterProvider(mp))

	// Two retries, then success.
	ctx, span := tp.Tracer("test").Start(testCtx(t), "GetUser")
	inv := failing(unavailable(), status.Error(codes.ResourceExhausted, "shed"))
	if err := h.call(ctx, getUser, inv); err != nil {
		t.Fatal(err)
	}
	span.End()

	// A refused retry: the budget is drained during the first attempt.
	refused := failing(unavailable())
	refused.onCall = func(int) { drain(h.budget) }
	_ = h.call(testCtx(t), getUser, refused)

	spans := recorder.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans ended, want 1", len(spans))
	}
	type event struct {
		attempt, backoffMs int64
		code               string
	}
	var got []event
	for _, e := range spans[0].Events() {
		if e.Name != "retry" {
			continue
		}
		set := attribute.NewSet(e.Attributes...)
		a, _ := set.Value("rampart.retry.attempt")
		b, _ := set.Value("rampart.retry.backoff_ms")
		c, _ := set.Value("rampart.retry.previous_code")
		got = append(got, event{a.AsInt64(), b.AsInt64(), c.AsString()})
	}
	want := []event{{2, 50, "Unavailable"}, {3, 100, "ResourceExhausted"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("retry events %+v, want %+v", got, want)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(testCtx(t), &rm); err != nil {
		t.Fatal(err)
	}
	retries := sums(t, rm, "rampart_client_retries_total")
	for _, code := range []string{"Unavailable", "ResourceExhausted"} {
		key := attribute.NewSet(
			attribute.String("target", "user"),
			attribute.String("method", getUser),
			attribute.String("code", code),
		)
		if retries[key] != 1 {
			t.Errorf("rampart_client_retries_total{code=%s} = %d, want 1 (all: %v)", code, retries[key], retries)
		}
	}
	if len(retries) != 2 {
		t.Errorf("rampart_client_retries_total has %d series, want 2: %v", len(retries), retries)
	}
	exhausted := sums(t, rm, "rampart_retry_budget_exhausted_total")
	if key := attribute.NewSet(attribute.String("target", "user")); exhausted[key] != 1 || len(exhausted) != 1 {
		t.Errorf("rampart_retry_budget_exhausted_total = %v, want {target=user} 1", exhausted)
	}
}

// sums returns the data points of an int64 counter by attribute set.
func sums(t *testing.T, rm metricdata.ResourceMetrics, name string) map[attribute.Set]int64 {
	t.Helper()
	out := map[attribute.Set]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || !sum.IsMonotonic {
				t.Fatalf("%s is %T, want a monotonic int64 sum", name, m.Data)
			}
			for _, dp := range sum.DataPoints {
				out[dp.Attributes] += dp.Value
			}
		}
	}
	return out
}
