// Package telemetry sets up OpenTelemetry for a Rampart process: the tracer
// and meter providers with the instance's resource, the W3C propagator, the
// trace exporter chosen by the standard OTEL_* variables or the config, a
// Prometheus registry for /metrics, the gRPC instrumentation (a server span
// and rpc.server.call.duration per call, a client span and
// rpc.client.call.duration per attempt, a logical client span per call) and
// log valuers that put the trace and span IDs on every line logged inside a
// request.
//
// New installs nothing process-wide: the composition root (internal/server)
// sets the OpenTelemetry globals from the providers it returns, and passes
// the meter provider to the middleware explicitly.
//
// The gRPC instrumentation is Rampart's own interceptors on the
// OpenTelemetry API (grpc.go), not otelgrpc's stats handlers, although it
// emits what they emitted: the same spans, attributes, metric names, units
// and buckets in every OTEL_SEMCONV_STABILITY_OPT_IN mode, which
// pin_test.go recorded from otelgrpc v0.72 and checks. The library was not
// enough because of what it cost on every call, sampled or not. Measured on
// test/bench's case (c) (a sampled call through both chains), its handlers
// allocated 68 times per call and took 31 to 39 µs of CPU; on (c'), a call
// not sampled, 54 times and 25 µs; and gRPC allocates 33 more per call to
// feed any stats handler its events, even one that does nothing. They copied
// the whole incoming and outgoing metadata to read or add one header,
// started a span before knowing whether it would be recorded, and built
// every attribute set per call. Here a call not sampled under a parent
// does no span work at all, propagation reads and appends one header
// (w3c.go), attribute sets are built once per method, and each call is one
// record per instrument: 17 allocations and 11 to 16 µs on (c), 8 and 4 to
// 9 µs on (c') (docs/performance.md has the run and the profiles).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/runtime"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// scopeName is the instrumentation scope of the spans this package starts
// itself (the logical client spans).
const scopeName = "github.com/rampart-go/rampart/internal/telemetry"

// ResourceInfo identifies the process in every span and metric. It mirrors
// the instance the service registers in Consul, so a span leads to the
// instance that emitted it.
type ResourceInfo struct {
	ServiceName    string
	ServiceVersion string
	// InstanceID is the Consul instance ID.
	InstanceID string
}

// Option configures New.
type Option func(*options)

type options struct {
	processors  []sdktrace.SpanProcessor
	readers     []sdkmetric.Reader
	traceWriter io.Writer
	lookup      func(string) (string, bool)
}

// WithSpanProcessor adds a span processor next to the configured exporter;
// tests use it to record spans in memory (tracetest.SpanRecorder). The
// processor is shut down with the provider.
func WithSpanProcessor(sp sdktrace.SpanProcessor) Option {
	return func(o *options) { o.processors = append(o.processors, sp) }
}

// WithMetricReader adds a metric reader next to the Prometheus exporter;
// tests use it to read what the instruments recorded, with their units,
// kinds and bucket boundaries (sdkmetric.NewManualReader). The reader is
// shut down with the provider.
func WithMetricReader(r sdkmetric.Reader) Option {
	return func(o *options) { o.readers = append(o.readers, r) }
}

// WithTraceWriter sets where the stdout exporter writes; the default is
// os.Stdout.
func WithTraceWriter(w io.Writer) Option {
	return func(o *options) { o.traceWriter = w }
}

// WithLookup is where New reads the OTEL_* variables (see Config.Resolve):
// the lookup the configuration was parsed with, so the process environment
// is read in one place. Without it New reads none.
func WithLookup(lookup func(string) (string, bool)) Option {
	return func(o *options) { o.lookup = lookup }
}

// Telemetry owns the providers of one process. Shutdown flushes them.
type Telemetry struct {
	settings Settings
	tp       *sdktrace.TracerProvider
	mp       *sdkmetric.MeterProvider
	prop     propagation.TextMapPropagator
	registry *prometheus.Registry
	tracer   trace.Tracer

	// The RPC instrumentation (grpc.go): its scope's tracer and meter,
	// whether the sampler follows a parent's decision, and the instruments
	// and method values of each side, built when first asked for.
	rpcTracer   trace.Tracer
	rpcMeter    metric.Meter
	parentBased bool
	serverOnce  sync.Once
	server      *rpcServer
	clientOnce  sync.Once
	clientDur   durations
}

// New builds the providers described by cfg and the OTEL_* variables (see
// Config.Resolve and WithLookup), and the W3C trace-context and baggage
// propagator. With the none exporter the
// tracer provider is still a real SDK provider: spans get IDs that logs and
// downstream services can use, they are just not sent anywhere.
//
// The caller must call Shutdown, even if it exports nothing: it stops the
// batch processor's goroutine. ctx bounds only the setup.
func New(ctx context.Context, cfg Config, info ResourceInfo, opts ...Option) (*Telemetry, error) {
	o := options{traceWriter: os.Stdout}
	for _, opt := range opts {
		opt(&o)
	}
	settings, err := cfg.Resolve(o.lookup)
	if err != nil {
		return nil, err
	}
	res, err := newResource(ctx, info)
	if err != nil {
		return nil, err
	}

	tpOpts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(settings.newSampler()),
	}
	exp, err := newSpanExporter(ctx, settings, o.traceWriter)
	if err != nil {
		return nil, err
	}
	if exp != nil {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	}
	for _, sp := range o.processors {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(sp))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)

	registry := prometheus.NewRegistry()
	mp, err := newMeterProvider(res, registry, o.readers)
	if err != nil {
		return nil, errors.Join(err, tp.Shutdown(ctx))
	}

	t := &Telemetry{
		settings: settings,
		tp:       tp,
		mp:       mp,
		prop:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		registry: registry,
		tracer:   tp.Tracer(scopeName),

		rpcTracer: tp.Tracer(rpcScopeName, trace.WithInstrumentationVersion(rpcScopeVersion)),
		rpcMeter: mp.Meter(rpcScopeName, metric.WithInstrumentationVersion(rpcScopeVersion),
			metric.WithSchemaURL(semconv.SchemaURL)),
		parentBased: strings.HasPrefix(settings.Sampler, "parentbased_"),
	}
	return t, nil
}

// newResource describes the process. OTEL_RESOURCE_ATTRIBUTES may add
// attributes (deployment.environment, say), but the identity comes last and
// so wins over OTEL_SERVICE_NAME: a span's service and instance must be the
// ones Consul and the logs know it by.
func newResource(ctx context.Context, info ResourceInfo) (*resource.Resource, error) {
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
		resource.WithAttributes(
			semconv.ServiceName(info.ServiceName),
			semconv.ServiceVersion(info.ServiceVersion),
			semconv.ServiceInstanceID(info.InstanceID),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry resource (check OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	return res, nil
}

// newSpanExporter builds the exporter the settings name, or nil for none.
//
// An endpoint from a variable is left to the exporter, which reads the
// variables itself and knows their rules (/v1/traces appended to the
// generic endpoint over HTTP but not to the TRACES_ one, http:// meaning
// insecure). An endpoint from the file is passed explicitly, read like the
// generic variable. Exporters connect lazily, so an unreachable collector
// does not stop the process; failed exports reach the OTel error handler.
func newSpanExporter(ctx context.Context, s Settings, w io.Writer) (sdktrace.SpanExporter, error) {
	switch s.TracesExporter {
	case ExporterStdout:
		exp, err := stdouttrace.New(stdouttrace.WithWriter(w))
		if err != nil {
			return nil, fmt.Errorf("stdout trace exporter: %w", err)
		}
		return exp, nil
	case ExporterOTLP:
	default:
		return nil, nil
	}
	fromFile := s.OTLPEndpoint != "" && s.OTLPEndpointFrom != EnvOTLPEndpoint && s.OTLPEndpointFrom != EnvOTLPTracesEndpoint
	if s.OTLPProtocol == ProtocolGRPC {
		var opts []otlptracegrpc.Option
		if fromFile {
			opts = append(opts, otlptracegrpc.WithEndpointURL(s.OTLPEndpoint))
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("otlp grpc trace exporter: %w", err)
		}
		return exp, nil
	}
	var opts []otlptracehttp.Option
	if fromFile {
		u, err := url.Parse(s.OTLPEndpoint)
		if err != nil { // Resolve has checked it already
			return nil, fmt.Errorf("telemetry.otlp_endpoint: %w", err)
		}
		u.Path = path.Join("/", u.Path, "v1/traces")
		opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp http trace exporter: %w", err)
	}
	return exp, nil
}

// newMeterProvider builds a meter provider read by a Prometheus exporter on
// registry. A registry of our own, not the client library's global one,
// keeps /metrics to what this provider records and lets tests build
// several.
func newMeterProvider(res *resource.Resource, registry *prometheus.Registry, extra []sdkmetric.Reader) (*sdkmetric.MeterProvider, error) {
	reader, err := otelprom.New(
		otelprom.WithRegisterer(registry),
		// The scheduler-latency histogram comes from a producer, the rest
		// of the runtime metrics from runtime.Start below.
		otelprom.WithProducer(runtime.NewProducer()),
	)
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(reader)}
	for _, r := range extra {
		mpOpts = append(mpOpts, sdkmetric.WithReader(r))
	}
	mp := sdkmetric.NewMeterProvider(mpOpts...)
	// Runtime metrics are read in a callback at scrape time: no goroutine,
	// and nothing left running once the provider is shut down.
	if err := runtime.Start(runtime.WithMeterProvider(mp)); err != nil {
		return nil, errors.Join(fmt.Errorf("runtime metrics: %w", err), mp.Shutdown(context.Background()))
	}
	return mp, nil
}

// rpcMetricLabels are the only attributes the RPC metrics (rpc.client.*
// and rpc.server.*) keep: the target, the method and the code, in the
// current and the pre-1.39 conventions. otelgrpc also put server.address
// and server.port of the picked instance on client metrics; instance ports
// are dynamic (make run, Nomad), so every restart of a peer would add
// series that never go away. Per-instance detail is in the attempt spans.
// The filter runs once per method and code, when the attribute sets are
// built (newRPCMethod), not as a view's AttributeFilter, which the SDK
// would run on every measurement.
var rpcMetricLabels = attribute.NewAllowKeysFilter(
	TargetKey,
	semconv.RPCSystemNameKey, semconv.RPCMethodKey, semconv.RPCResponseStatusCodeKey, semconv.ErrorTypeKey,
	oldRPCSystemKey, oldRPCServiceKey, oldRPCGRPCStatusCodeKey,
)

// Settings returns the configuration in effect, for the start-up log line.
func (t *Telemetry) Settings() Settings { return t.settings }

// TracerProvider returns the process's tracer provider.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

// MeterProvider returns the process's meter provider. The middleware gets
// it explicitly (their WithMeterProvider options), so the order of
// construction does not matter.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.mp }

// Propagator returns the W3C trace-context and baggage propagator.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.prop }

// MetricsHandler serves the Prometheus registry, for /metrics on the HTTP
// side port.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
}

// Shutdown exports the spans still buffered and stops both providers. Call
// it after the servers have stopped, so the last calls' spans are in the
// flush; ctx bounds the flush. Globals set from the providers then point
// at stopped providers, which record nothing.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if err := t.tp.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("tracer provider: %w", err))
	}
	if err := t.mp.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("meter provider: %w", err))
	}
	return errors.Join(errs...)
}
