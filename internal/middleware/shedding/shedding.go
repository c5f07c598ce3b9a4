// Package shedding is the server-side load shedder: a Kratos middleware that
// refuses work an overloaded instance could not finish in time anyway.
//
// Policy: aegis' BBR limiter decides. While CPU usage (a moving average
// sampled every 500 ms) is above the threshold, and for one second after
// shedding started, a request is refused when the requests in flight exceed
// what the instance has shown it can complete (max passes per bucket × min
// latency). Below the threshold nothing is shed, however many are in flight. A refused request costs no handler time: it gets
// ResourceExhausted with ErrorInfo reason LOAD_SHED and the trailer
// grpc-retry-pushback-ms, which tells the client's retry to back off at least
// that long (or, if negative, not to retry) rather than hammer the instance.
//
// It sits after the access log and metrics in the server chain, so shed
// requests are still seen, and before validation and the handler, so they
// cost as little as possible. The server's timeout cap is already on the
// call: Kratos applies it before any middleware.
//
// Importing this package starts aegis' CPU sampler: two goroutines, started
// from package init and never stopped, that read the process CPU every
// 500 ms. Tests using goleak must ignore them (goleak.IgnoreCurrent() in
// TestMain does).
package shedding

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-kratos/aegis/ratelimit"
	"github.com/go-kratos/aegis/ratelimit/bbr"
	"github.com/go-kratos/kratos/v2/middleware"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/rampart-go/rampart/internal/rpc"
)

// MetricShed counts refused requests per method.
const MetricShed = "rampart_shed_total"

// Config is the server.shedding block of the config file.
type Config struct {
	// Enabled puts the shedder in the server chain.
	Enabled bool `yaml:"enabled"`
	// CPUThreshold is the CPU usage, in per mille of the quota (800 = 80 %),
	// above which BBR starts comparing in-flight requests to capacity.
	CPUThreshold int64 `yaml:"cpu_threshold"`
	// Window is what BBR measures throughput and latency over.
	Window time.Duration `yaml:"window"`
	// Bucket is how many buckets the window is split into.
	Bucket int `yaml:"bucket"`
	// Pushback is the wait a refused client is told to observe before
	// retrying, sent in whole milliseconds; negative tells it not to retry.
	Pushback time.Duration `yaml:"pushback"`
}

// DefaultConfig is aegis BBR's own threshold, window and buckets, and a
// pushback long enough to let an overloaded instance drain a little yet
// short next to a typical call budget.
func DefaultConfig() Config {
	return Config{Enabled: true, CPUThreshold: 800, Window: 10 * time.Second, Bucket: 100, Pushback: 100 * time.Millisecond}
}

// Validate reports every field BBR cannot work with, each as "key: reason".
// A disabled shedder's settings are not checked: they are not used.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if c.CPUThreshold <= 0 || c.CPUThreshold > 1000 {
		errs = append(errs, fmt.Errorf("cpu_threshold: must be in (0, 1000] per mille, got %d", c.CPUThreshold))
	}
	if c.Window <= 0 {
		errs = append(errs, errors.New("window: must be > 0"))
	}
	if c.Bucket <= 0 {
		errs = append(errs, errors.New("bucket: must be > 0"))
	} else if c.Window > 0 && c.Window/time.Duration(c.Bucket) <= 0 {
		// BBR divides the window by the bucket count.
		errs = append(errs, fmt.Errorf("window: %v is too short for %d buckets", c.Window, c.Bucket))
	}
	if c.Pushback < 0 {
		errs = append(errs, errors.New("pushback: must be >= 0"))
	}
	return errors.Join(errs...)
}

// Option configures Server.
type Option func(*options)

type options struct {
	limiter       ratelimit.Limiter
	meterProvider metric.MeterProvider
}

// WithLimiter replaces BBR with l, for tests that need a limiter that
// refuses on demand. The config's CPU threshold, window and bucket are then
// unused.
func WithLimiter(l ratelimit.Limiter) Option {
	return func(o *options) { o.limiter = l }
}

// WithMeterProvider records metrics through mp instead of the global
// otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// Server returns the load-shedding middleware with c as given (Enabled is
// the caller's decision); c must pass Validate, since BBR divides by the
// window and the bucket count.
func Server(c Config, opts ...Option) middleware.Middleware {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.limiter == nil {
		o.limiter = bbr.NewLimiter(
			bbr.WithCPUThreshold(c.CPUThreshold),
			bbr.WithWindow(c.Window),
			bbr.WithBucket(c.Bucket),
		)
	}
	if o.meterProvider == nil {
		o.meterProvider = otel.GetMeterProvider()
	}
	shed, err := o.meterProvider.Meter("github.com/rampart-go/rampart/internal/middleware/shedding").
		Int64Counter(MetricShed,
			metric.WithDescription("Requests refused by the load shedder before reaching the handler."),
			metric.WithUnit("{request}"))
	if err != nil {
		// The API returns a no-op counter with the error: report, carry on.
		otel.Handle(err)
	}
	// Built once: the trailer is the same for every refusal.
	trailer := metadata.Pairs(rpc.PushbackTrailer, strconv.FormatInt(c.Pushback.Milliseconds(), 10))
	limiter := o.limiter

	return func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, req any) (reply any, err error) {
			done, lerr := limiter.Allow()
			if lerr != nil {
				method := rpc.ServerOperation(ctx)
				// Fails only outside a gRPC stream (HTTP, unit tests), where
				// there is no trailer to send.
				_ = grpc.SetTrailer(ctx, trailer)
				shed.Add(ctx, 1, metric.WithAttributes(attribute.String("method", method)))
				return nil, shedError(method)
			}
			// Deferred so a panicking handler still leaves the in-flight
			// count; otherwise BBR would believe the instance busier forever.
			defer func() { done(ratelimit.DoneInfo{Err: err}) }()
			return next(ctx, req)
		}
	}
}

func shedError(method string) error {
	return rpc.Error(codes.ResourceExhausted, rpc.ReasonLoadShed, "server overloaded, shedding "+method,
		map[string]string{"method": method})
}
