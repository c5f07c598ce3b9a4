// Package otlptest is an OTLP/gRPC trace receiver for tests: point a
// process at Endpoint with OTEL_EXPORTER_OTLP_ENDPOINT and
// OTEL_EXPORTER_OTLP_PROTOCOL=grpc, then assert on the spans it exported,
// each flattened with the resource and scope it came with.
package otlptest

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// Span is one received span with the resource and scope it was sent under.
// The embedded proto gives the raw fields (Name, Kind, Status, Events...).
type Span struct {
	*tracepb.Span
	Resource *resourcepb.Resource
	Scope    *commonpb.InstrumentationScope
	// ServiceName is the resource's service.name, the process that sent it.
	ServiceName string
}

// TraceID is the span's trace ID in hex, as logs print it.
func (s Span) TraceID() string { return hex.EncodeToString(s.GetTraceId()) }

// SpanID is the span's ID in hex.
func (s Span) SpanID() string { return hex.EncodeToString(s.GetSpanId()) }

// ParentSpanID is the parent's span ID in hex, "" for a root span.
func (s Span) ParentSpanID() string { return hex.EncodeToString(s.GetParentSpanId()) }

// Attr is the value of the span attribute key as a string ("" when
// absent), so that a test compares codes and names without unwrapping
// AnyValue.
func (s Span) Attr(key string) string { return attr(s.GetAttributes(), key) }

// ResourceAttr is the value of the resource attribute key as a string.
func (s Span) ResourceAttr(key string) string { return attr(s.Resource.GetAttributes(), key) }

// HasEvent reports whether the span has an event called name.
func (s Span) HasEvent(name string) bool {
	for _, e := range s.GetEvents() {
		if e.GetName() == name {
			return true
		}
	}
	return false
}

func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return valueString(kv.GetValue())
		}
	}
	return ""
}

func valueString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// Receiver collects the spans exported to it, in arrival order.
type Receiver struct {
	collectortracepb.UnimplementedTraceServiceServer

	addr string

	mu    sync.Mutex
	spans []Span
	// changed is closed and replaced on every export, waking WaitFor.
	changed chan struct{}
}

// Start serves a receiver on a free loopback port until the test ends.
func Start(tb testing.TB) *Receiver {
	tb.Helper()
	var lc net.ListenConfig
	lis, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("otlptest: listen: %v", err)
	}
	r := &Receiver{addr: lis.Addr().String(), changed: make(chan struct{})}
	srv := grpc.NewServer()
	collectortracepb.RegisterTraceServiceServer(srv, r)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis) // returns when Stop closes the listener
	}()
	tb.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return r
}

// Endpoint is the receiver's URL for OTEL_EXPORTER_OTLP_ENDPOINT; http://
// tells the exporter to connect without TLS.
func (r *Receiver) Endpoint() string { return "http://" + r.addr }

// Export implements the OTLP trace service.
func (r *Receiver) Export(_ context.Context, req *collectortracepb.ExportTraceServiceRequest) (*collectortracepb.ExportTraceServiceResponse, error) {
	got := Flatten(req)
	r.mu.Lock()
	r.spans = append(r.spans, got...)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	return &collectortracepb.ExportTraceServiceResponse{}, nil
}

// Flatten lists the spans of one export request with their resource and
// scope; an OTLP/HTTP receiver in a test can use it on the decoded body.
func Flatten(req *collectortracepb.ExportTraceServiceRequest) []Span {
	var spans []Span
	for _, rs := range req.GetResourceSpans() {
		service := attr(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				spans = append(spans, Span{Span: sp, Resource: rs.GetResource(), Scope: ss.GetScope(), ServiceName: service})
			}
		}
	}
	return spans
}

// Spans returns the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Reset forgets the spans received so far, to assert on one step at a time.
func (r *Receiver) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = nil
}

// WaitFor returns the spans received so far once done reports true for
// them. Spans arrive in batches some time after they end, so a test waits
// for what it expects rather than sleeping. If ctx ends first, it returns
// the spans it has with an error saying how many there were.
func (r *Receiver) WaitFor(ctx context.Context, done func([]Span) bool) ([]Span, error) {
	for {
		r.mu.Lock()
		spans := append([]Span(nil), r.spans...)
		changed := r.changed
		r.mu.Unlock()
		if done(spans) {
			return spans, nil
		}
		select {
		case <-ctx.Done():
			return spans, fmt.Errorf("otlptest: condition not met with %d spans received: %w", len(spans), ctx.Err())
		case <-changed:
		}
	}
}
