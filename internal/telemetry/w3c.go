package telemetry

import (
	"context"
	"encoding/hex"
	"strings"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

// The W3C headers the propagator (trace context and baggage) reads and
// writes.
const (
	traceparentKey = "traceparent"
	tracestateKey  = "tracestate"
	baggageKey     = "baggage"
)

// W3C propagation over gRPC metadata without copying it. otelgrpc, like
// any propagator given a metadata carrier, copies the call's whole incoming
// metadata to read two headers, and the whole outgoing metadata (a new map
// per call) to add one; that was 9 of its allocations per call on the
// server and 4 on the client, sampled or not. Here a call that carries
// only a traceparent (every call between Rampart services that has no
// tracestate or baggage) reads that one value and appends that one header.
// Anything else (a tracestate, baggage, or propagation headers the caller
// already put in the outgoing metadata) goes through the propagator as
// before, so the rules of both specifications stay the SDK's.

// extract returns ctx with the remote span context and the baggage of the
// call's incoming W3C headers, as t.prop.Extract would.
func (t *Telemetry) extract(ctx context.Context) context.Context {
	tp := metadata.ValueFromIncomingContext(ctx, traceparentKey)
	ts := metadata.ValueFromIncomingContext(ctx, tracestateKey)
	bg := metadata.ValueFromIncomingContext(ctx, baggageKey)
	if len(ts) > 0 || len(bg) > 0 {
		carrier := propagation.MapCarrier{}
		for _, h := range []struct {
			key    string
			values []string
		}{{traceparentKey, tp}, {tracestateKey, ts}, {baggageKey, bg}} {
			if len(h.values) > 0 {
				carrier[h.key] = h.values[0]
			}
		}
		return t.prop.Extract(ctx, carrier)
	}
	if len(tp) == 0 {
		return ctx
	}
	sc, ok := parseTraceparent(tp[0])
	if !ok {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// inject returns ctx with the W3C headers of its span context and baggage
// added to the outgoing metadata, as t.prop.Inject into that metadata
// would.
func (t *Telemetry) inject(ctx context.Context) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	if sc.TraceState().Len() > 0 || baggage.FromContext(ctx).Len() > 0 || hasPropagationHeaders(ctx) {
		// What otelgrpc did: the metadata copied, the headers set (not
		// appended: the caller's own traceparent must not go out first).
		md, ok := metadata.FromOutgoingContext(ctx)
		if !ok {
			md = metadata.MD{}
		}
		t.prop.Inject(ctx, metadataCarrier(md))
		return metadata.NewOutgoingContext(ctx, md)
	}
	if !sc.IsValid() {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, traceparentKey, formatTraceparent(sc))
}

// hasPropagationHeaders reports whether the outgoing metadata already
// holds a header the propagator writes (a handler that forwards its
// incoming metadata does that).
func hasPropagationHeaders(ctx context.Context) bool {
	return len(metadata.ValueFromOutgoingContext(ctx, traceparentKey)) > 0 ||
		len(metadata.ValueFromOutgoingContext(ctx, tracestateKey)) > 0 ||
		len(metadata.ValueFromOutgoingContext(ctx, baggageKey)) > 0
}

// metadataCarrier is gRPC metadata as a propagation carrier, read and
// written like otelgrpc's: the first value of a key, set replacing.
type metadataCarrier metadata.MD

var _ propagation.TextMapCarrier = metadataCarrier{}

func (c metadataCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c metadataCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c metadataCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// formatTraceparent writes sc as a version 00 traceparent, keeping only
// the flags the specification defines (sampled, random), as
// propagation.TraceContext does.
func formatTraceparent(sc trace.SpanContext) string {
	var buf [55]byte
	buf[0], buf[1], buf[2] = '0', '0', '-'
	tid, sid := sc.TraceID(), sc.SpanID()
	hex.Encode(buf[3:35], tid[:])
	buf[35] = '-'
	hex.Encode(buf[36:52], sid[:])
	buf[52] = '-'
	flags := [1]byte{byte(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))}
	hex.Encode(buf[53:55], flags[:])
	return string(buf[:])
}

// parseTraceparent reads a traceparent header with the rules of
// propagation.TraceContext (W3C Trace Context): a version other than ff,
// then lower-case hex trace ID, parent ID and flags of exactly 32, 16 and 2
// digits; version 00 allows nothing after the flags and no reserved flag
// bit, a later version anything after a dash. A tracestate is not read
// here: a call that has one goes through the propagator.
func parseTraceparent(h string) (trace.SpanContext, bool) {
	var ver [1]byte
	if !cutHex(ver[:], &h, 2) || ver[0] > 254 {
		return trace.SpanContext{}, false
	}
	var scc trace.SpanContextConfig
	if !cutHex(scc.TraceID[:], &h, 32) || !cutHex(scc.SpanID[:], &h, 16) {
		return trace.SpanContext{}, false
	}
	var flags [1]byte
	if !cutHex(flags[:], &h, 2) {
		return trace.SpanContext{}, false
	}
	if ver[0] == 0 && (h != "" || flags[0] > 3) {
		return trace.SpanContext{}, false
	}
	scc.TraceFlags = trace.TraceFlags(flags[0]) & (trace.FlagsSampled | trace.FlagsRandom)
	scc.Remote = true
	sc := trace.NewSpanContext(scc)
	return sc, sc.IsValid()
}

// cutHex decodes the part of *h before the next dash into dst, n lower-case
// hex digits, and leaves the rest after the dash in *h.
func cutHex(dst []byte, h *string, n int) bool {
	part, rest, _ := strings.Cut(*h, "-")
	*h = rest
	if len(part) != n {
		return false
	}
	for i := 0; i < n; i += 2 {
		hi, ok1 := fromHex(part[i])
		lo, ok2 := fromHex(part[i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i/2] = hi<<4 | lo
	}
	return true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
