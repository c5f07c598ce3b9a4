// Package breaker is the client-side adaptive circuit breaker: one aegis SRE
// breaker (Google SRE book, "Handling Overload", client-side throttling) per
// called method, as a gRPC unary client interceptor.
//
// Policy:
//   - Only failures of the peer count against a method, as internal/rpc
//     classifies them (Classify's PeerFault): Unavailable, DeadlineExceeded,
//     ResourceExhausted answered by the server, Internal, Unknown and
//     DataLoss. OK, every client error (InvalidArgument, NotFound,
//     AlreadyExists, FailedPrecondition, …) and what this client raised itself
//     (a reply over the message size limit) count as successes, because the
//     server answered and is healthy; a flood of bad requests must never cut
//     a caller off.
//   - A caller cancellation counts as neither: it says nothing about the
//     server, and counting it as a success would hide an outage behind
//     impatient callers.
//   - The breaker's own rejections are not recorded either, so its window
//     measures the backend only and it reopens as soon as real calls succeed.
//   - A rejected call fails fast, without touching the network, with
//     Unavailable and an ErrorInfo whose reason is CIRCUIT_OPEN; retry treats
//     that reason as final, so an open breaker never turns into a retry loop.
//   - While the breaker is rejecting (it rejected a call within its window),
//     the calls it still lets through are its probes of the backend. A probe
//     that fails with a server-side failure is answered the same way, with
//     CIRCUIT_OPEN and the backend's message: another attempt would only
//     wait out a backoff to be rejected, so during an outage every call
//     fails fast, and the probes that succeed close the breaker again.
//
// In the client chain it sits inside retry and outside the attempt timeout,
// so every attempt is judged separately and a rejected attempt costs nothing.
package breaker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kratos/aegis/circuitbreaker"
	"github.com/go-kratos/aegis/circuitbreaker/sre"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/rpc"
)

// Metric names, exported so dashboards and tests need not repeat the strings.
const (
	MetricRejections = "rampart_breaker_rejections_total"
	MetricState      = "rampart_breaker_state"
)

// Config tunes one method's breaker, the breaker block of a client or of a
// method override in the config file.
type Config struct {
	// Success is the success ratio the backend is expected to keep, in
	// (0, 1]; the breaker lets through about 1/Success times the calls that
	// succeeded in the window and rejects the excess. Lower is more tolerant.
	Success float64 `yaml:"success"`
	// Request is the number of calls in the window below which the breaker
	// never rejects, so a handful of failures on a quiet method cannot trip it.
	Request int64 `yaml:"request"`
	// Window is the statistical window the ratio is computed over.
	Window time.Duration `yaml:"window"`
	// Bucket is how many buckets the window is split into; the window slides
	// one bucket at a time.
	Bucket int `yaml:"bucket"`
}

// DefaultConfig is aegis' SRE breaker's own defaults.
func DefaultConfig() Config {
	return Config{Success: 0.6, Request: 100, Window: 3 * time.Second, Bucket: 10}
}

// Validate reports every field aegis cannot work with, each as
// "key: reason", so the config layer can refuse it at start.
func (c Config) Validate() error {
	var errs []error
	// YAML can spell NaN (.nan), which every range comparison lets through.
	if math.IsNaN(c.Success) || math.IsInf(c.Success, 0) {
		errs = append(errs, fmt.Errorf("success: must be a finite number, got %v", c.Success))
	} else if c.Success <= 0 || c.Success > 1 {
		errs = append(errs, fmt.Errorf("success: must be in (0, 1], got %v", c.Success))
	}
	if c.Request <= 0 {
		errs = append(errs, errors.New("request: must be > 0"))
	}
	if c.Window <= 0 {
		errs = append(errs, errors.New("window: must be > 0"))
	}
	if c.Bucket <= 0 {
		errs = append(errs, errors.New("bucket: must be > 0"))
	} else if c.Window > 0 && c.Window/time.Duration(c.Bucket) <= 0 {
		errs = append(errs, fmt.Errorf("window: %v is too short for %d buckets", c.Window, c.Bucket))
	}
	return errors.Join(errs...)
}

// Option configures Client.
type Option func(*options)

type options struct {
	meterProvider metric.MeterProvider
}

// WithMeterProvider records metrics through mp instead of the global
// otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// entry is the breaker of one method and what is needed to report on it.
type entry struct {
	cb circuitbreaker.CircuitBreaker
	// window is the method's statistical window: the state gauge reads 1 for
	// that long after a rejection.
	window time.Duration
	// lastReject is the time of the latest rejection in Unix nanoseconds, 0
	// if none.
	lastReject atomic.Int64
	// attrs is built once so recording a metric does not allocate.
	attrs metric.MeasurementOption
}

type client struct {
	target     string
	configFor  func(method string) Config
	breakers   sync.Map // method -> *entry
	rejections metric.Int64Counter
}

// Client returns the breaker interceptor for calls to target (the client's
// service name; it labels metrics and errors). configFor gives the config of
// a method the first time it is called, nil meaning DefaultConfig for all; a
// config that fails Validate is reported through otel.Handle and replaced by
// DefaultConfig, because an interceptor cannot refuse to start.
//
// It exports rampart_breaker_rejections_total{target, method}, and
// rampart_breaker_state{target, method}, which is 1 while the method's breaker
// has rejected a call within its last window and 0 otherwise. aegis' SRE
// breaker has no open/closed state to report: it rejects each call with a
// probability that grows with the failure ratio, so "rejected recently" is
// the honest reading of it.
func Client(target string, configFor func(method string) Config, opts ...Option) grpc.UnaryClientInterceptor {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.meterProvider == nil {
		o.meterProvider = otel.GetMeterProvider()
	}
	if configFor == nil {
		configFor = func(string) Config { return DefaultConfig() }
	}
	c := &client{target: target, configFor: configFor}
	c.instrument(o.meterProvider.Meter("github.com/rampart-go/rampart/internal/middleware/breaker"))
	return c.intercept
}

// instrument creates the metrics. The OTel API returns a working no-op
// instrument alongside any error, so a failure is reported, not fatal.
func (c *client) instrument(m metric.Meter) {
	var err error
	c.rejections, err = m.Int64Counter(MetricRejections,
		metric.WithDescription("Calls the client-side circuit breaker rejected without sending them."),
		metric.WithUnit("{call}"))
	if err != nil {
		otel.Handle(err)
	}
	_, err = m.Int64ObservableGauge(MetricState,
		metric.WithDescription("1 while the method's breaker has rejected a call within its window, else 0."),
		metric.WithInt64Callback(c.observeState))
	if err != nil {
		otel.Handle(err)
	}
}

func (c *client) observeState(_ context.Context, o metric.Int64Observer) error {
	now := time.Now().UnixNano()
	c.breakers.Range(func(_, v any) bool {
		e := v.(*entry)
		var state int64
		if last := e.lastReject.Load(); last != 0 && now-last < int64(e.window) {
			state = 1
		}
		o.Observe(state, e.attrs)
		return true
	})
	return nil
}

func (c *client) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	e := c.entry(method)
	if e.cb.Allow() != nil {
		e.lastReject.Store(time.Now().UnixNano())
		c.rejections.Add(ctx, 1, e.attrs)
		return c.openError(method)
	}
	err := invoker(ctx, method, req, reply, cc, opts...)
	switch o := rpc.Classify(ctx, err); {
	case o.Code == codes.Canceled:
		// The caller gave up; the server's health is unknown.
	case o.PeerFault:
		e.cb.MarkFailed()
		if last := e.lastReject.Load(); last != 0 && time.Now().UnixNano()-last < int64(e.window) {
			return c.probeFailed(method, err)
		}
	default:
		e.cb.MarkSuccess()
	}
	return err
}

// probeFailed is the answer to a probe that failed while the breaker is
// rejecting: CIRCUIT_OPEN, so it is not retried, with the backend's own
// message and code kept for the log and the trace.
func (c *client) probeFailed(method string, err error) error {
	cause := status.Convert(err)
	return rpc.Error(codes.Unavailable, rpc.ReasonCircuitOpen, cause.Message(),
		map[string]string{"target": c.target, "method": method, "probe": "failed", "cause": cause.Code().String()})
}

// entry returns the breaker of method, creating it on first use. Load first
// so the common path neither allocates nor builds a breaker it throws away.
func (c *client) entry(method string) *entry {
	if v, ok := c.breakers.Load(method); ok {
		return v.(*entry)
	}
	cfg := c.configFor(method)
	if err := cfg.Validate(); err != nil {
		otel.Handle(fmt.Errorf("breaker %s %s: %w; using defaults", c.target, method, err))
		cfg = DefaultConfig()
	}
	e := &entry{
		cb: sre.NewBreaker(
			sre.WithSuccess(cfg.Success),
			sre.WithRequest(cfg.Request),
			sre.WithWindow(cfg.Window),
			sre.WithBucket(cfg.Bucket),
		),
		window: cfg.Window,
		attrs: metric.WithAttributeSet(attribute.NewSet(
			attribute.String("target", c.target),
			attribute.String("method", method),
		)),
	}
	v, _ := c.breakers.LoadOrStore(method, e)
	return v.(*entry)
}

func (c *client) openError(method string) error {
	return rpc.Error(codes.Unavailable, rpc.ReasonCircuitOpen, "circuit breaker open for "+c.target+" "+method,
		map[string]string{"target": c.target, "method": method})
}
