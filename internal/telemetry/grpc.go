package telemetry

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	oldrpcconv "go.opentelemetry.io/otel/semconv/v1.37.0/rpcconv"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/rpcconv"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/rpc"
)

// TargetKey is the attribute of a logical client span that names the client
// target ("user"), the name the chain's metrics use as their target label.
const TargetKey = attribute.Key("rampart.target")

// The instrumentation scope of the server and attempt spans and of the
// rpc.* instruments. It is otelgrpc's, name and version, because these
// interceptors replace its stats handlers (v0.72.0) and emit what they
// emitted: trace queries and dashboards that select on the scope, and the
// otel_scope_* labels of every rpc_* series in Prometheus, stay as they
// were. A scope of Rampart's own would give every series new labels: a
// visible change, to make on purpose if at all.
const (
	rpcScopeName    = "go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	rpcScopeVersion = "0.72.0"
)

// durationBuckets are the bucket boundaries, in seconds, of the current
// duration instruments: otelgrpc's, which the conventions recommend.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// ServerInterceptor returns the server option that gives every unary call
// a server span, child of the caller's attempt span read from the W3C
// headers, and records rpc.server.call.duration. The span is in the
// handler's context, so the handler's own outgoing calls are its children.
//
// It is gRPC's own unary interceptor (grpc.UnaryInterceptor), which gRPC
// runs before every chained one, Kratos' transport among them: the span is
// open before any middleware, so every log line of the call carries its
// trace ID. A server takes one such option; a second panics at start. The
// span and the duration end when the handler returns, before gRPC writes
// the reply; otelgrpc's ended once the status was written, microseconds
// later.
//
// Health checks are left out of both: Consul calls them every few seconds
// and they would bury the traces worth reading. A method the server does
// not know adds no series: gRPC answers it Unimplemented before any
// interceptor runs.
//
// Over mTLS the span names the calling service in service.peer.name (from
// the verified client certificate, rpc.CallerService). That is the semantic
// conventions' attribute for "the logical name of the service on the other
// side of the connection", which replaced peer.service: a backend that
// builds service maps from it draws the caller without a Rampart-specific
// key.
func (t *Telemetry) ServerInterceptor() grpc.ServerOption {
	return grpc.UnaryInterceptor(t.rpcServer().unary)
}

// ServerStreamInterceptor returns the server option that does for every
// streaming call what ServerInterceptor does for unary ones: a server span
// from the stream's start to the handler's return, and its duration. It is
// gRPC's own stream interceptor (grpc.StreamInterceptor), run first. The
// services' streams are the health watch (left out, like every health
// call) and reflection.
func (t *Telemetry) ServerStreamInterceptor() grpc.ServerOption {
	return grpc.StreamInterceptor(t.rpcServer().stream)
}

// AttemptSpan returns the innermost client interceptor of a target's
// chain: every attempt gets a client span and records
// rpc.client.call.duration, labelled with target (TargetKey). Each time the
// retry interceptor invokes, a new attempt span starts, child of the span
// in the context it was given (the logical span), and its W3C headers are
// what the server sees. Attempt spans carry server.address and server.port
// of the instance that served the attempt: that is what tells which hop
// failed. The metrics do not (rpcMetricLabels).
func (t *Telemetry) AttemptSpan(target string) grpc.UnaryClientInterceptor {
	return t.rpcClient(target).unary
}

// ClientStreamInterceptor returns the dial option that gives every
// streaming call on the connection what AttemptSpan gives a unary attempt:
// a client span from the stream's start to its end as gRPC reports it
// (grpc.OnFinish), and its duration, labelled with target.
func (t *Telemetry) ClientStreamInterceptor(target string) grpc.DialOption {
	return grpc.WithChainStreamInterceptor(t.rpcClient(target).stream)
}

// mayRecord reports whether a span started under parent may be recorded.
// With a parent-based sampler (every service's default) a valid parent
// decides: under an unsampled one nothing is recorded, which is known
// without asking the sampler, generating IDs or building attributes, and
// the call goes on in the parent's span context (its trace ID in logs and
// in the headers downstream, flags unsampled). Otherwise the sampler
// decides in Start.
func (t *Telemetry) mayRecord(parent trace.SpanContext) bool {
	return !t.parentBased || !parent.IsValid() || parent.IsSampled()
}

// durations are one side's duration instruments, nil when the semconv
// mode records none of that kind.
type durations struct{ current, old metric.Float64Histogram }

// record is the one measurement of a call per instrument: seconds on the
// current instrument, milliseconds on the old one, with the method's
// attribute set for code, in the context of the call's span (so an
// exemplar points at it).
func (d durations) record(ctx context.Context, m *rpcMethod, code codes.Code, elapsed time.Duration) {
	secs := float64(elapsed) / float64(time.Second)
	if d.old != nil {
		d.old.Record(ctx, secs*1000, m.old.of(code)...)
	}
	if d.current != nil {
		d.current.Record(ctx, secs, m.current.of(code)...)
	}
}

// rpcServer is the server side's tracer, instruments and method values,
// one per Telemetry.
type rpcServer struct {
	t       *Telemetry
	dur     durations
	methods *methodCache[rpcMethod]
	local   addrCache
}

var serverKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}

func (t *Telemetry) rpcServer() *rpcServer {
	t.serverOnce.Do(func() {
		var dur durations
		if t.settings.conv.old {
			h, err := oldrpcconv.NewServerDuration(t.rpcMeter)
			handle(err)
			dur.old = h.Inst()
		}
		if !t.settings.conv.noCurrent {
			h, err := rpcconv.NewServerCallDuration(t.rpcMeter, metric.WithExplicitBucketBoundaries(durationBuckets...))
			handle(err)
			dur.current = h.Inst()
		}
		t.server = &rpcServer{t: t, dur: dur, methods: newMethodCache(func(method string) *rpcMethod {
			return newRPCMethod(t.settings.conv, method, nil, serverError, dur)
		})}
	})
	return t.server
}

func (s *rpcServer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	m := s.methods.get(info.FullMethod)
	if m.skip {
		return handler(ctx, req)
	}
	begin := time.Now()
	ctx, span := s.start(ctx, m)
	reply, err := handler(ctx, req)
	s.end(ctx, span, m, err, begin)
	return reply, err
}

func (s *rpcServer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	m := s.methods.get(info.FullMethod)
	if m.skip {
		return handler(srv, ss)
	}
	begin := time.Now()
	ctx, span := s.start(ss.Context(), m)
	err := handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
	s.end(ctx, span, m, err, begin)
	return err
}

// serverStream is a server stream whose context carries the server span.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }

// start reads the caller's trace context and, if the call may be
// recorded, starts its span; span is nil when it is not recorded.
func (s *rpcServer) start(ctx context.Context, m *rpcMethod) (context.Context, trace.Span) {
	return s.t.startSpan(s.t.extract(ctx), s.t.rpcTracer, m.name, serverKind)
}

// startSpan starts a span under ctx's if it may be recorded (mayRecord)
// and returns it if the sampler recorded it, else nil. Under a parent that
// decides, nothing is started; otherwise ctx holds the unrecorded span the
// sampler made, whose IDs logs and downstream services still see.
func (t *Telemetry) startSpan(ctx context.Context, tr trace.Tracer, name string, kind []trace.SpanStartOption) (context.Context, trace.Span) {
	if !t.mayRecord(trace.SpanContextFromContext(ctx)) {
		return ctx, nil
	}
	ctx, span := tr.Start(ctx, name, kind...)
	if !span.IsRecording() {
		return ctx, nil
	}
	return ctx, span
}

// end closes the call's span, if recorded, and records its duration. A
// server span fails only for the codes that are the server's fault
// (serverError); a NotFound is the caller's.
func (s *rpcServer) end(ctx context.Context, span trace.Span, m *rpcMethod, err error, begin time.Time) {
	code := codes.OK
	var st *status.Status
	if err != nil {
		st = statusOf(err)
		code = st.Code()
	}
	if span != nil {
		if st != nil && serverError(code) {
			span.SetStatus(otelcodes.Error, st.Message())
		}
		// The attributes otelgrpc set when the call started, when its
		// headers arrived, and when it ended, given at once.
		buf := spanAttrs.Get().(*[]attribute.KeyValue)
		kvs := append(*buf, m.attrs...)
		if p, ok := peer.FromContext(ctx); ok && p.LocalAddr != nil {
			kvs = append(kvs, s.local.attrs(p.LocalAddr)...)
		}
		if caller, ok := rpc.CallerService(ctx); ok {
			kvs = append(kvs, semconv.ServicePeerName(caller))
		}
		setAttrs(span, buf, append(kvs, m.status.of(code)))
		span.End()
	}
	s.dur.record(ctx, m, code, time.Since(begin))
}

// rpcClient is one client target's tracer, instruments and method values.
type rpcClient struct {
	t       *Telemetry
	dur     durations
	methods *methodCache[rpcMethod]
	remote  addrCache
}

var clientKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

func (t *Telemetry) rpcClient(target string) *rpcClient {
	t.clientOnce.Do(func() {
		if t.settings.conv.old {
			h, err := oldrpcconv.NewClientDuration(t.rpcMeter)
			handle(err)
			t.clientDur.old = h.Inst()
		}
		if !t.settings.conv.noCurrent {
			h, err := rpcconv.NewClientCallDuration(t.rpcMeter, metric.WithExplicitBucketBoundaries(durationBuckets...))
			handle(err)
			t.clientDur.current = h.Inst()
		}
	})
	dur, extra := t.clientDur, []attribute.KeyValue{TargetKey.String(target)}
	return &rpcClient{t: t, dur: dur, methods: newMethodCache(func(method string) *rpcMethod {
		return newRPCMethod(t.settings.conv, method, extra, clientError, dur)
	})}
}

// attemptPeer is where gRPC writes the instance an attempt reached, and
// the call option that asks it to, with room for the caller's options: one
// allocation, made only when the attempt is recorded.
type attemptPeer struct {
	peer peer.Peer
	opt  grpc.PeerCallOption
	opts [8]grpc.CallOption
}

func newAttemptPeer() *attemptPeer {
	p := &attemptPeer{}
	p.opt.PeerAddr = &p.peer
	return p
}

func (c *rpcClient) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	m := c.methods.get(method)
	if m.skip {
		return invoker(c.t.inject(ctx), method, req, reply, cc, opts...)
	}
	begin := time.Now()
	ctx, span := c.t.startSpan(ctx, c.t.rpcTracer, m.name, clientKind)
	ctx = c.t.inject(ctx)
	// Where gRPC writes the instance the attempt reached: the report of
	// an interceptor outside (retry's) when there is one, else a peer of
	// its own, asked for only when the span is recorded.
	var reached *peer.Peer
	if span != nil {
		if r := rpc.ReportIn(opts); r != nil {
			reached = &r.Peer
		} else {
			at := newAttemptPeer()
			opts = append(append(at.opts[:0], opts...), &at.opt)
			reached = &at.peer
		}
	}
	err := invoker(ctx, method, req, reply, cc, opts...)
	code := status.Code(err)
	if span != nil {
		c.end(span, m, err, code, reached.Addr)
	}
	c.dur.record(ctx, m, code, time.Since(begin))
	return err
}

func (c *rpcClient) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	m := c.methods.get(method)
	if m.skip {
		return streamer(c.t.inject(ctx), desc, cc, method, opts...)
	}
	begin := time.Now()
	ctx, span := c.t.startSpan(ctx, c.t.rpcTracer, m.name, clientKind)
	ctx = c.t.inject(ctx)
	at := newAttemptPeer()
	// gRPC calls OnFinish once, when the stream ends however it ends (its
	// status read, an error, the caller's context done), after it has
	// filled the peer.
	finish := grpc.OnFinish(func(err error) {
		code := status.Code(err)
		if span != nil {
			c.end(span, m, err, code, at.peer.Addr)
		}
		c.dur.record(ctx, m, code, time.Since(begin))
	})
	return streamer(ctx, desc, cc, method, append(append(at.opts[:0], opts...), &at.opt, finish)...)
}

// end closes a recorded attempt's span: its attributes, the instance it
// reached if it reached one, and any code but OK as Error.
func (c *rpcClient) end(span trace.Span, m *rpcMethod, err error, code codes.Code, addr net.Addr) {
	if err != nil {
		span.SetStatus(otelcodes.Error, status.Convert(err).Message())
	}
	buf := spanAttrs.Get().(*[]attribute.KeyValue)
	kvs := append(*buf, m.attrs...)
	if addr != nil {
		kvs = append(kvs, c.remote.attrs(addr)...)
	}
	setAttrs(span, buf, append(kvs, m.status.of(code)))
	span.End()
}

// handle reports an instrument the SDK refused to OpenTelemetry's error
// handler, as otelgrpc did; the call then records on a no-op instrument.
func handle(err error) {
	if err != nil {
		otel.Handle(err)
	}
}

// logicalMethod is what the logical span of one method needs, built once.
type logicalMethod struct {
	name string
	// attrs are the span's attributes for each final code, given at its
	// end in one call.
	attrs perCode[[]attribute.KeyValue]
}

// LogicalSpan returns the outermost client interceptor of a target's chain.
// It starts one client span per call, named like the method
// ("user.v1.UserService/GetUser"), and passes its context down, so the
// interceptors below see it as the current span: retry and breaker add
// their events to it, and the attempt spans of AttemptSpan become its
// children. The span ends when the last attempt has returned, with the
// call's final code and, on failure, status Error.
//
// Attributes follow the RPC conventions the attempt spans follow, so the
// logical span and its attempts agree: by default rpc.system.name,
// rpc.method (fully qualified) and rpc.response.status_code (the code's
// name); with OTEL_SEMCONV_STABILITY_OPT_IN=rpc/old the older rpc.system,
// rpc.service, rpc.method and rpc.grpc.status_code, and with rpc/dup both.
// TargetKey names target.
func (t *Telemetry) LogicalSpan(target string) grpc.UnaryClientInterceptor {
	conv := t.settings.conv
	targetAttr := TargetKey.String(target)
	methods := newMethodCache(func(method string) *logicalMethod {
		start := conv.startAttrs(method, targetAttr)
		return &logicalMethod{
			name: strings.TrimPrefix(method, "/"),
			attrs: newPerCode(func(c codes.Code) []attribute.KeyValue {
				return append(slices.Clip(start), conv.endAttrs(c)...)
			}),
		}
	})
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if !t.mayRecord(trace.SpanContextFromContext(ctx)) {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		m := methods.get(method)
		ctx, span := t.startSpan(ctx, t.tracer, m.name, clientKind)
		if span == nil {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		err := invoker(ctx, method, req, reply, cc, opts...)
		code := codes.OK
		if err != nil {
			st := statusOf(err)
			code = st.Code()
			span.SetStatus(otelcodes.Error, st.Message())
		}
		span.SetAttributes(m.attrs.of(code)...)
		span.End()
		return err
	}
}

// statusOf is the gRPC status of a call's error. Interceptors may return a
// bare context error (a cancelled backoff wait); it maps to its code
// rather than Unknown, as gRPC maps a handler's.
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

// startAttrs are the logical span's attributes known when the call to
// fullMethod starts. In dup mode the current ones come last so their
// rpc.method (fully qualified) wins, as on the attempt spans.
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

// endAttrs are the logical span's attributes of a call that ended with
// code.
func (m semconvMode) endAttrs(code codes.Code) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 2)
	if m.old {
		attrs = append(attrs, oldRPCGRPCStatusCodeKey.Int(int(code)))
	}
	if !m.noCurrent {
		attrs = append(attrs, semconv.RPCResponseStatusCode(rpc.CodeName(code)))
	}
	return attrs
}
