package telemetry_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/rampart-go/rampart/internal/telemetry"
)

// traceparents are headers at the edges of the W3C Trace Context rules.
var traceparents = []string{
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02", // random
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-04", // reserved bit in version 00
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",    // version 00: nothing after the flags
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz", // version 00: nothing after the flags
	"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-xyz", // a later version may add fields
	"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09",
	"fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // forbidden version
	"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", // upper case
	"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace ID
	"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent ID
	"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace ID
	"00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bg-01",
	"0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
	"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736",
	"-",
	"",
}

// fromPropagator is what propagation.TraceContext reads from h.
func fromPropagator(h string) trace.SpanContext {
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": h})
	return trace.SpanContextFromContext(ctx)
}

// checkParse fails when parseTraceparent and the SDK's propagator read h
// differently.
func checkParse(t *testing.T, h string) {
	t.Helper()
	got, ok := telemetry.ParseTraceparent(h)
	want := fromPropagator(h)
	if ok != want.IsValid() || (ok && !got.Equal(want)) {
		t.Errorf("traceparent %q: parsed %v (ok %t), the propagator reads %v", h, got, ok, want)
	}
}

// The traceparent the interceptors read is the one the SDK's propagator
// reads, header for header, including the ones it refuses.
func TestParseTraceparentAgreesWithThePropagator(t *testing.T) {
	for _, h := range traceparents {
		checkParse(t, h)
	}
	// Random edits of valid headers: a changed, dropped or added character.
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "0123456789abcdefABCDEF-xz "
	for range 20000 {
		b := []byte(traceparents[r.IntN(4)])
		switch i := r.IntN(len(b)); r.IntN(3) {
		case 0:
			b[i] = alphabet[r.IntN(len(alphabet))]
		case 1:
			b = append(b[:i], b[i+1:]...)
		default:
			b = append(b[:i], append([]byte{alphabet[r.IntN(len(alphabet))]}, b[i:]...)...)
		}
		checkParse(t, string(b))
	}
}

// FuzzParseTraceparent looks for a header the two read differently
// (go test -fuzz FuzzParseTraceparent ./internal/telemetry).
func FuzzParseTraceparent(f *testing.F) {
	for _, h := range traceparents {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, h string) { checkParse(t, h) })
}

// The traceparent the interceptors write is the one the SDK's propagator
// writes, for every combination of flags.
func TestFormatTraceparentAgreesWithThePropagator(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for flags := range 256 {
		var cfg trace.SpanContextConfig
		for i := range cfg.TraceID {
			cfg.TraceID[i] = byte(r.Uint32())
		}
		for i := range cfg.SpanID {
			cfg.SpanID[i] = byte(r.Uint32())
		}
		cfg.TraceFlags = trace.TraceFlags(flags)
		sc := trace.NewSpanContext(cfg)
		carrier := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), carrier)
		if got, want := telemetry.FormatTraceparent(sc), carrier.Get("traceparent"); got != want {
			t.Errorf("flags %02x: wrote %q, the propagator writes %q", flags, got, want)
		}
		if !strings.HasPrefix(carrier.Get("traceparent"), "00-") {
			t.Fatalf("the propagator wrote %q", carrier.Get("traceparent"))
		}
	}
}
