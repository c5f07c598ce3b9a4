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

// Defaults of the options: aegis BBR's own threshold, window and buckets, and
// a pushback long enough to let an overloaded instance drain a little yet
// short next to a typical call budget.
const (
	DefaultCPUThreshold = 800 // ‰ of the CPU quota
	DefaultWindow       = 10 * time.Second
	DefaultBucket       = 100
	DefaultPushback     = 100 * time.Millisecond
)

// Option configures Server.
type Option func(*options)

type options struct {
	cpuThreshold  int64
	window        time.Duration
	bucket        int
	pushback      time.Duration
	limiter       ratelimit.Limiter
	meterProvider metric.MeterProvider
}

// WithCPUThreshold sets the CPU usage, in ‰ of the quota, above which BBR
// starts comparing in-flight requests to capacity. Default 800.
func WithCPUThreshold(permille int64) Option {
	return func(o *options) { o.cpuThreshold = permille }
}

// WithWindow sets the window BBR measures throughput and latency over.
// Default 10 s.
func WithWindow(d time.Duration) Option {
	return func(o *options) { o.window = d }
}

// WithBucket sets how many buckets the window is split into. Default 100.
func WithBucket(n int) Option {
	return func(o *options) { o.bucket = n }
}

// WithPushback sets the wait a refused client is told to observe before
// retrying; it is sent in whole milliseconds. A negative value tells clients
// not to retry at all. Default 100 ms.
func WithPushback(d time.Duration) Option {
	return func(o *options) { o.pushback = d }
}

// WithLimiter replaces BBR with l, for tests that need a limiter that
// refuses on demand. The CPU, window and bucket options are then unused.
func WithLimiter(l ratelimit.Limiter) Option {
	return func(o *options) { o.limiter = l }
}

// WithMeterProvider records metrics through mp instead of the global
// otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// Server returns the load-shedding middleware. Every option has a working
// default; a non-positive window or bucket count falls back to it, because
// BBR divides by both.
func Server(opts ...Option) middleware.Middleware {
	o := options{
		cpuThreshold: DefaultCPUThreshold,
		window:       DefaultWindow,
		bucket:       DefaultBucket,
		pushback:     DefaultPushback,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.window <= 0 || o.bucket <= 0 || o.window/time.Duration(o.bucket) <= 0 {
		o.window, o.bucket = DefaultWindow, DefaultBucket
	}
	if o.limiter == nil {
		o.limiter = bbr.NewLimiter(
			bbr.WithCPUThreshold(o.cpuThreshold),
			bbr.WithWindow(o.window),
			bbr.WithBucket(o.bucket),
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
	trailer := metadata.Pairs(rpc.PushbackTrailer, strconv.FormatInt(o.pushback.Milliseconds(), 10))
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
