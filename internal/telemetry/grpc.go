package telemetry

import (
	"context"
	"errors"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/rpc"
)

// TargetKey is the attribute of a logical client span that names the client
// target ("user"), the name the chain's metrics use as their target label.
const TargetKey = attribute.Key("rampart.target")

// ServerStatsHandler returns the server option that gives every call a
// server span, child of the caller's attempt span read from the W3C
// headers, and records rpc.server.call.duration. The span is in the
// handler's context, so the handler's own outgoing calls are its children.
//
// Health checks are left out of both: Consul calls them every few seconds
// and they would bury the traces worth reading. A method the server does not
// know adds no series: grpc-go answers it Unimplemented without ending the
// call's stats (there is no unknown-service handler), so nothing is recorded
// for a name a client made up.
//
// Over mTLS the span names the calling service in service.peer.name (from
// the verified client certificate, rpc.CallerService). That is the semantic
// conventions' attribute for "the logical name of the service on the other
// side of the connection", which replaced peer.service: a backend that
// builds service maps from it draws the caller without a Rampart-specific
// key.
func (t *Telemetry) ServerStatsHandler() grpc.ServerOption {
	return grpc.StatsHandler(callerAttribute{otelgrpc.NewServerHandler(t.otelgrpcOptions()...)})
}

// callerAttribute adds service.peer.name to the server span otelgrpc has
// just started for a call. The peer, with its TLS state, is in the
// context from the connection's start, so the caller is known before any
// interceptor runs.
type callerAttribute struct{ stats.Handler }

func (h callerAttribute) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	ctx = h.Handler.TagRPC(ctx, info)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		if caller, ok := rpc.CallerService(ctx); ok {
			span.SetAttributes(semconv.ServicePeerName(caller))
		}
	}
	return ctx
}

// ClientStatsHandler returns the dial option that gives every attempt a
// client span and records rpc.client.call.duration per attempt, labelled
// with target (TargetKey). gRPC runs stats handlers below all interceptors,
// so each time the retry interceptor invokes, a new attempt span starts,
// child of the span in the context it was given (the logical span), and its
// W3C headers are what the server sees. Attempt spans carry server.address
// and server.port of the instance the balancer picked: that is what tells
// which hop failed. The metrics do not (rpcMetricLabels).
func (t *Telemetry) ClientStatsHandler(target string) grpc.DialOption {
	return grpc.WithStatsHandler(otelgrpc.NewClientHandler(append(t.otelgrpcOptions(),
		otelgrpc.WithMetricAttributes(TargetKey.String(target)))...))
}

func (t *Telemetry) otelgrpcOptions() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(t.tp),
		otelgrpc.WithMeterProvider(t.mp),
		otelgrpc.WithPropagators(t.prop),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	}
}

// LogicalSpan returns the outermost client interceptor of a target's chain.
// It starts one client span per call, named like the method
// ("user.v1.UserService/GetUser"), and passes its context down, so the
// interceptors below see it as the current span: retry and breaker add
// their events to it, and the attempt spans of ClientStatsHandler become
// its children. The span ends when the last attempt has returned, with the
// call's final code and, on failure, status Error.
//
// Attributes follow the RPC conventions otelgrpc emits, so the logical span
// and its attempts agree: by default rpc.system.name, rpc.method (fully
// qualified) and rpc.response.status_code (the code's name); with
// OTEL_SEMCONV_STABILITY_OPT_IN=rpc/old the older rpc.system, rpc.service,
// rpc.method and rpc.grpc.status_code, and with rpc/dup both. TargetKey
// names target.
func (t *Telemetry) LogicalSpan(target string) grpc.UnaryClientInterceptor {
	conv := t.settings.conv
	targetAttr := TargetKey.String(target)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		name := strings.TrimPrefix(method, "/")
		ctx, span := t.tracer.Start(ctx, name,
			trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(conv.startAttrs(method, targetAttr)...),
		)
		err := invoker(ctx, method, req, reply, cc, opts...)
		if span.IsRecording() {
			st := statusOf(err)
			span.SetAttributes(conv.endAttrs(st)...)
			if err != nil {
				span.SetStatus(otelcodes.Error, st.Message())
			}
		}
		span.End()
		return err
	}
}

// statusOf is the gRPC status of a call's error. Interceptors may return a
// bare context error (a cancelled backoff wait); it maps to its code
// rather than Unknown.
func statusOf(err error) *status.Status {
	if st, ok := status.FromError(err); ok {
		return st
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err)
	}
	return status.Convert(err)
}

// semconvMode selects the RPC attribute names, read from the same variable
// and with the same values as otelgrpc. The zero value is the default,
// current names only.
type semconvMode struct{ noCurrent, old bool }

func readSemconvMode(lookup func(string) (string, bool)) semconvMode {
	v, _ := lookup(envSemconvStabilityOptIn)
	for part := range strings.SplitSeq(v, ",") {
		switch strings.TrimSpace(part) {
		case "rpc/dup":
			return semconvMode{old: true}
		case "rpc/old":
			return semconvMode{noCurrent: true, old: true}
		}
	}
	return semconvMode{}
}

// Attribute keys of the RPC conventions before semconv 1.39, which current
// semconv packages no longer define.
const (
	oldRPCSystemKey         = attribute.Key("rpc.system")
	oldRPCServiceKey        = attribute.Key("rpc.service")
	oldRPCMethodKey         = attribute.Key("rpc.method")
	oldRPCGRPCStatusCodeKey = attribute.Key("rpc.grpc.status_code")
)

// startAttrs are the attributes known when the call to fullMethod starts.
// In dup mode the current ones come last so their rpc.method (fully
// qualified) wins, as in otelgrpc.
func (m semconvMode) startAttrs(fullMethod string, target attribute.KeyValue) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 6)
	if m.old {
		service, method, _ := rpc.SplitMethod(fullMethod)
		attrs = append(attrs, oldRPCSystemKey.String("grpc"), oldRPCServiceKey.String(service), oldRPCMethodKey.String(method))
	}
	if !m.noCurrent {
		attrs = append(attrs, semconv.RPCSystemNameGRPC, semconv.RPCMethod(strings.TrimPrefix(fullMethod, "/")))
	}
	return append(attrs, target)
}

func (m semconvMode) endAttrs(st *status.Status) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 2)
	if m.old {
		attrs = append(attrs, oldRPCGRPCStatusCodeKey.Int(int(st.Code())))
	}
	if !m.noCurrent {
		attrs = append(attrs, semconv.RPCResponseStatusCode(rpc.CodeName(st.Code())))
	}
	return attrs
}
