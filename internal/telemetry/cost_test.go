package telemetry_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/rampart-go/rampart/internal/rpc"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// incoming is a server call's context as gRPC builds it, with the headers
// a Rampart client sends and the given traceparent.
func incoming(traceparent string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(
		":authority", "127.0.0.1:9000",
		"content-type", "application/grpc",
		"user-agent", "grpc-go/1.85.0",
		"grpc-accept-encoding", "gzip",
		"grpc-timeout", "1999m",
		"x-rampart-attempt", "1",
		"traceparent", traceparent,
	))
}

const (
	sampledParent   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	unsampledParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
)

// What the instrumentation allocates per call, outside gRPC and the SDK's
// span itself. A call under an unsampled parent (every call of a trace the
// sampler dropped, with the default parent-based sampler) does no span
// work at all; its cost is propagation alone. A regression here is paid on
// every call of every service.
func TestInstrumentationAllocations(t *testing.T) {
	clearOTelEnv(t)
	tel, _ := newTelemetry(t, telemetry.Config{})
	server := tel.UnaryServer()
	info := &grpc.UnaryServerInfo{FullMethod: "/user.v1.UserService/GetUser"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	attempt := tel.AttemptSpan("user")
	logical := tel.LogicalSpan("user")
	unsampledIn, sampledIn := incoming(unsampledParent), incoming(sampledParent)
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1},
	}))
	sampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	}))

	report := &rpc.AttemptReport{}
	peerOpt, trailerOpt := report.Options()
	reportOpts := []grpc.CallOption{trailerOpt, peerOpt}

	for _, tt := range []struct {
		name string
		call func()
		// want is exact when max is 0, else allocations must be in want..max.
		want, max float64
	}{
		// The traceparent's value copied out of the metadata (gRPC's
		// ValueFromIncomingContext), and the remote span context put in
		// the handler's context (the span value and the context): 3.
		{name: "server, unsampled parent", want: 3, call: func() {
			_, _ = server(unsampledIn, nil, info, handler)
		}},
		// The traceparent written (1) and appended to the outgoing metadata
		// (gRPC's AppendToOutgoingContext: 4).
		{name: "attempt, unsampled", want: 5, call: func() {
			_ = attempt(unsampled, "/user.v1.UserService/GetUser", nil, nil, nil, invoker)
		}},
		{name: "logical span, unsampled parent", want: 0, call: func() {
			_ = logical(unsampled, "/user.v1.UserService/GetUser", nil, nil, nil, invoker)
		}},
		// The 3 above, and the SDK's span: the span, its context, its
		// attributes (given in one call), its snapshot at End. Bounds, not
		// a number: the SDK's share may move with its version.
		{name: "server, sampled parent", want: 7, max: 8, call: func() {
			_, _ = server(sampledIn, nil, info, handler)
		}},
		// The SDK's span (4), where gRPC writes the peer (1), the header (5).
		{name: "attempt, sampled", want: 10, max: 11, call: func() {
			_ = attempt(sampled, "/user.v1.UserService/GetUser", nil, nil, nil, invoker)
		}},
		// Under retry, whose rpc.AttemptReport already has gRPC write the
		// peer: the span (4) and the header (5).
		{name: "attempt, sampled, with a report", want: 9, max: 10, call: func() {
			_ = attempt(sampled, "/user.v1.UserService/GetUser", nil, nil, nil, invoker, reportOpts...)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.call() // first call builds the method's values
			got := testing.AllocsPerRun(200, tt.call)
			if tt.max == 0 && got != tt.want || tt.max != 0 && (got < tt.want || got > tt.max) {
				t.Errorf("%v allocations per call, want %v (max %v)", got, tt.want, tt.max)
			}
		})
	}
}
