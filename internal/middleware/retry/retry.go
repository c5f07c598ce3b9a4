// Package retry is the client-side retry policy: a gRPC unary client
// interceptor that repeats a failed call only when repeating it is both safe
// and useful, and never lets retries multiply load during an outage.
//
// The policy, in the order it is checked after a failed attempt:
//
//   - Chain stop: a call made while serving a request that was itself a retry
//     (see Server) gets exactly one attempt, so retries never multiply across
//     hops.
//   - Safety: only methods whose proto declares idempotency_level
//     NO_SIDE_EFFECTS or IDEMPOTENT are retried (IsSafeToRetry); the rest get
//     one attempt.
//   - Attempts: Config.MaxAttempts counts the first attempt; default 3, never
//     more than 5.
//   - Outcome: only what internal/rpc classifies as transient is retried:
//     Unavailable, ResourceExhausted answered by the server, and
//     DeadlineExceeded, only while the caller's own context is still live, so
//     a DeadlineExceeded is retried only when it came from the per-attempt
//     deadline of an inner interceptor. An Unavailable with reason
//     CIRCUIT_OPEN is the local breaker's answer and a ResourceExhausted that
//     grpc-go raised for a message over the size limit is this client's own
//     limit: neither is ever retried.
//   - Pushback: a grpc-retry-pushback-ms trailer with a non-negative integer
//     replaces the backoff with exactly that wait; a negative or malformed
//     value means do not retry (gRPC A6).
//   - Backoff: full jitter, rand * min(MaxBackoff, InitialBackoff *
//     Multiplier^(n-1)), where n counts retries since the last pushback (as in
//     gRPC A6, a server-dictated wait resets the exponent).
//   - Deadline: a wait that would end at or after the context deadline is not
//     started; the last error is returned at once.
//   - Budget: every logical call that may retry deposits one request in the
//     target's Budget, every retry withdraws one; when the budget refuses, the
//     last error is returned at once.
//
// Hedging (gRPC A6's hedgingPolicy, WithHedging) replaces retry for a method
// that has it, as A6 makes the two exclusive per method: see hedge. Only
// NO_SIDE_EFFECTS methods are hedged; each hedge is paid from the same
// budget, one token each, so hedging cannot double a slow target's load;
// each counts rampart_client_hedges_total{target,method} and adds a "hedge"
// event to the current span. Chain stop applies to hedging too.
//
// Each attempt carries rpc.AttemptHeader (1-based) in its outgoing metadata, built
// from the caller's context so earlier attempts leave no trace. Each retry adds
// a "retry" event to the current span and counts
// rampart_client_retries_total{target,method,code}; budget refusals count
// rampart_retry_budget_exhausted_total{target}. A call whose first attempt
// succeeds starts no goroutine and does no map writes.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/rpc"
)

// maxMaxAttempts is the most attempts a policy may ask for: beyond it a
// retry policy stops protecting the caller and starts hurting the
// dependency. Validate refuses more, and the interceptor never makes more.
const maxMaxAttempts = 5

// Config is one method's retry policy, the retry block of a client or of a
// method override in the config file. The interceptor uses it as given:
// DefaultConfig holds the defaults and Validate the limits.
type Config struct {
	// MaxAttempts is the total number of attempts including the first;
	// 1 means no retry, 5 is the most.
	MaxAttempts int `yaml:"max_attempts"`
	// InitialBackoff bounds the first retry's jittered wait.
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	// MaxBackoff caps every jittered wait.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// Multiplier grows the bound after each retry.
	Multiplier float64 `yaml:"multiplier"`
}

// DefaultConfig is gRPC's usual retry shape: three attempts, 50 ms growing
// twofold up to a second.
func DefaultConfig() Config {
	return Config{MaxAttempts: 3, InitialBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2}
}

// Validate reports every invalid field, each as "key: reason" with the key
// of the config file.
func (c Config) Validate() error {
	var errs []error
	if c.MaxAttempts < 1 || c.MaxAttempts > maxMaxAttempts {
		errs = append(errs, fmt.Errorf("max_attempts: must be between 1 and %d, got %d", maxMaxAttempts, c.MaxAttempts))
	}
	if c.InitialBackoff <= 0 {
		errs = append(errs, errors.New("initial_backoff: must be > 0"))
	}
	if c.MaxBackoff < c.InitialBackoff {
		errs = append(errs, fmt.Errorf("max_backoff: must be >= initial_backoff (%s)", c.InitialBackoff))
	}
	// YAML can spell NaN and infinities (.nan, .inf); every comparison with
	// NaN is false and +Inf passes a lower bound, so they are named first.
	if math.IsNaN(c.Multiplier) || math.IsInf(c.Multiplier, 0) {
		errs = append(errs, fmt.Errorf("multiplier: must be a finite number, got %v", c.Multiplier))
	} else if c.Multiplier < 1 {
		errs = append(errs, fmt.Errorf("multiplier: must be >= 1, got %v", c.Multiplier))
	}
	return errors.Join(errs...)
}

// backoff returns the jittered wait before the n-th retry (n >= 1) given a
// jitter sample r in [0,1).
func (c Config) backoff(n int, r float64) time.Duration {
	bound := float64(c.InitialBackoff) * math.Pow(c.Multiplier, float64(n-1))
	if bound > float64(c.MaxBackoff) || math.IsNaN(bound) {
		bound = float64(c.MaxBackoff)
	}
	return time.Duration(r * bound)
}

// Clock is the source of time the interceptor waits on; tests inject a fake.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Sleep waits for d, or until ctx is done, in which case it returns
	// ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error { return rpc.Sleep(ctx, d) }

// Option configures Client.
type Option func(*options)

type options struct {
	clock      Clock
	rand       func() float64
	mp         metric.MeterProvider
	hedgingFor func(string) HedgingConfig
}

// WithClock replaces the wall clock used for the deadline rule and for
// waiting between attempts.
func WithClock(c Clock) Option {
	return func(o *options) { o.clock = c }
}

// WithRand replaces the jitter source; f must return values in [0,1).
func WithRand(f func() float64) Option {
	return func(o *options) { o.rand = f }
}

// WithMeterProvider sets where the retry counters are recorded; the default
// is otel.GetMeterProvider() at the time Client is called.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.mp = mp }
}

// meterName is the instrumentation scope of the retry counters.
const meterName = "github.com/rampart-go/rampart/internal/middleware/retry"

// Client returns the retry interceptor for one client target (e.g. "user").
// policyFor is called once per call with the full method
// ("/user.v1.UserService/GetUser"). budget is shared by every method of the
// target; nil gives the target a default budget of its own. A nil policyFor
// gives every method DefaultConfig. The config is used as given, so the
// caller validates it (internal/conf does at start); whatever it says, no
// call makes more than five attempts.
func Client(target string, policyFor func(method string) Config, budget *Budget, opts ...Option) grpc.UnaryClientInterceptor {
	if policyFor == nil {
		def := DefaultConfig()
		policyFor = func(string) Config { return def }
	}
	o := options{clock: realClock{}, rand: rand.Float64}
	for _, opt := range opts {
		opt(&o)
	}
	if o.mp == nil {
		o.mp = otel.GetMeterProvider()
	}
	if budget == nil {
		budget = NewBudget(DefaultBudgetConfig())
	}
	r := &retrier{
		target:     target,
		policyFor:  policyFor,
		budget:     budget,
		clock:      o.clock,
		rand:       o.rand,
		hedgingFor: o.hedgingFor,
		targetSet:  metric.WithAttributeSet(attribute.NewSet(attribute.String("target", target))),
	}
	r.retries, r.exhausted, r.hedges = counters(o.mp.Meter(meterName))
	return r.intercept
}

// counters creates the retry, budget and hedge counters.
func counters(m metric.Meter) (retries, exhausted, hedges metric.Int64Counter) {
	return counter(m, "rampart_client_retries_total", "Retries made by the client, by the code that caused them.", "{retry}"),
		counter(m, "rampart_retry_budget_exhausted_total", "Retries and hedges refused because the target's retry budget was exhausted.", "{retry}"),
		counter(m, "rampart_client_hedges_total", "Hedged attempts sent by the client: attempts beyond the first of a hedged call.", "{attempt}")
}

// counter creates one counter; an instrument the SDK refuses is reported
// to the OTel error handler and replaced by a no-op, since losing a metric
// must not break calls.
func counter(m metric.Meter, name, description, unit string) metric.Int64Counter {
	c, err := m.Int64Counter(name, metric.WithDescription(description), metric.WithUnit(unit))
	if err != nil {
		otel.Handle(err)
		return noop.Int64Counter{}
	}
	return c
}

// retrier is the state of one target's interceptor, shared by its calls.
type retrier struct {
	target    string
	policyFor func(string) Config
	budget    *Budget
	clock     Clock
	rand      func() float64
	retries   metric.Int64Counter
	exhausted metric.Int64Counter
	hedges    metric.Int64Counter
	targetSet metric.MeasurementOption
	// hedgingFor is nil unless some method of the target is hedged, so
	// the others pay one nil check for hedging.
	hedgingFor func(string) HedgingConfig
}

func (r *retrier) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if chainStopped(ctx) {
		return invoker(rpc.WithAttempt(ctx, 1), method, req, reply, cc, opts...)
	}
	if r.hedgingFor != nil {
		if h := r.hedgingFor(method); h.Enabled() && HasNoSideEffects(method) {
			return r.hedge(ctx, method, req, reply, cc, invoker, opts, h)
		}
	}
	p := r.policyFor(method)
	if p.MaxAttempts == 1 || !IsSafeToRetry(method) {
		return invoker(rpc.WithAttempt(ctx, 1), method, req, reply, cc, opts...)
	}
	r.budget.Request()

	// One report of the attempt's trailer and instance, reset before each
	// attempt, so the pushback read after a failure is that attempt's own;
	// the interceptors inside read the same report (rpc.ReportIn). The
	// report and the call options that fill it share one allocation.
	st := &callState{}
	peerOpt, trailerOpt := st.report.Options()
	// Clipped, so an inner interceptor that appends its own options cannot
	// write into the slots shared by later attempts.
	callOpts := slices.Clip(append(append(st.opts[:0], opts...), trailerOpt, peerOpt))

	sincePushback := 0
	attemptCtx := ctx
	for attempt := 1; ; attempt++ {
		st.report.Reset()
		err := invoker(rpc.WithAttempt(attemptCtx, attempt), method, req, reply, cc, callOpts...)
		if err == nil || attempt >= p.MaxAttempts || attempt >= maxMaxAttempts {
			return err
		}
		o := rpc.Classify(ctx, err)
		if !o.Transient {
			return err
		}
		wait, pushedBack, ok := rpc.Pushback(st.report.Trailer)
		if !ok {
			return err
		}
		if pushedBack {
			sincePushback = 0
		} else {
			sincePushback++
			wait = p.backoff(sincePushback, r.rand())
		}
		if deadline, has := ctx.Deadline(); has && !r.clock.Now().Add(wait).Before(deadline) {
			return err
		}
		if !r.budget.TryRetry() {
			r.exhausted.Add(ctx, 1, r.targetSet)
			return err
		}
		if addr := st.report.Peer.Addr; addr != nil {
			// Built on the first retry only, so a call that succeeds at once
			// pays nothing for it.
			if st.tried == nil {
				st.tried = &tried{}
				attemptCtx = context.WithValue(ctx, triedKey{}, st.tried)
			}
			st.tried.add(addr.String())
		}
		r.record(ctx, method, attempt+1, wait, o.Code)
		if serr := r.clock.Sleep(ctx, wait); serr != nil {
			return status.FromContextError(serr).Err()
		}
	}
}

// callState is what the attempts of one call share: the report of the
// latest attempt and room for the caller's call options plus the report's.
type callState struct {
	report rpc.AttemptReport
	tried  *tried
	opts   [5]grpc.CallOption
}

// record emits the span event and the counter of one retry.
func (r *retrier) record(ctx context.Context, method string, next int, wait time.Duration, code codes.Code) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("retry", trace.WithAttributes(
			attribute.Int("rampart.retry.attempt", next),
			attribute.Int64("rampart.retry.backoff_ms", wait.Milliseconds()),
			attribute.String("rampart.retry.previous_code", code.String()),
		))
	}
	r.retries.Add(ctx, 1, metric.WithAttributes(
		attribute.String("target", r.target),
		attribute.String("method", method),
		attribute.String("code", code.String()),
	))
}
