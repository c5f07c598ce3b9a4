// Package faults injects failures into a running server, so tests and demos
// can prove the resilience chain works against real processes.
//
// Policy: off by default. With faults configured, a request to a method is
// matched against its own fault, else the "*" fault (the most specific entry
// wins whole; the two are never merged). A fault may first delay the request,
// for Percent of calls, by Duration or until the caller's context ends (then
// the answer is DeadlineExceeded or Canceled, as a slow server's would be);
// then abort it, for Percent of calls, with a gRPC code and ErrorInfo reason
// FAULT_INJECTED, either instead of running the handler or, with After, once
// the handler has run and its reply has been thrown away, the case
// idempotency keys exist for.
//
// Faults come from config at start and can be replaced at run time through
// Handler, served on /debug/faults to loopback callers only. The middleware
// is the innermost of the server chain, right before the handler, so an
// injected fault looks to everything above it like the handler's own answer,
// and Seen counts exactly the requests that would have reached the handler.
package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kratos/kratos/v2/middleware"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/rpc"
)

// AllMethods is the method key whose fault applies to every method without
// a fault of its own.
const AllMethods = "*"

// MetricInjected counts injected faults per method and kind (delay, abort).
const MetricInjected = "rampart_faults_injected_total"

// Config is the server.faults block of the config file.
type Config struct {
	// Endpoint serves /debug/faults on the HTTP side port (loopback callers
	// only), to change faults on a running instance.
	Endpoint bool `yaml:"endpoint"`
	// Methods maps a full method ("/user.v1.UserService/GetUser") or "*" to
	// its fault. Empty: no fault, and the injector costs one atomic load.
	Methods map[string]Fault `yaml:"methods"`
}

// DefaultConfig injects nothing and serves no endpoint: faults are for
// demos and resilience tests, switched on by the file that wants them.
func DefaultConfig() Config { return Config{} }

// Validate reports every invalid method key and fault, each as
// "methods.<method>[.field]: reason", in method order.
func (c Config) Validate() error {
	methods := make([]string, 0, len(c.Methods))
	for m := range c.Methods {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	var errs []error
	for _, m := range methods {
		key := "methods." + m
		if validMethod(m) != nil {
			errs = append(errs, fmt.Errorf("%s: must be * or a full method name like /user.v1.UserService/GetUser", key))
		}
		if err := c.Methods[m].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s.%w", key, err))
		}
	}
	return errors.Join(errs...)
}

// Fault delays and/or aborts a share of the calls to a method.
type Fault struct {
	Delay *Delay `json:"delay,omitempty" yaml:"delay"`
	Abort *Abort `json:"abort,omitempty" yaml:"abort"`
}

// Delay holds Percent of calls for Duration, or until the caller's context
// ends. In JSON, Duration is a Go duration string such as "2s".
type Delay struct {
	Percent  float64       `json:"percent" yaml:"percent"`
	Duration time.Duration `json:"duration" yaml:"duration"`
}

// Abort fails Percent of calls with Code, a gRPC code name in either the
// proto spelling ("UNAVAILABLE", "DEADLINE_EXCEEDED") or Go's
// ("Unavailable", "DeadlineExceeded"), any case. With After the handler runs
// first, so the call takes effect but the caller sees the error.
type Abort struct {
	Percent float64 `json:"percent" yaml:"percent"`
	Code    string  `json:"code" yaml:"code"`
	After   bool    `json:"after,omitempty" yaml:"after"`
}

// Validate reports the first invalid field of f, named by its path
// ("delay.percent", "abort.code").
func (f Fault) Validate() error {
	if d := f.Delay; d != nil {
		if err := validPercent(d.Percent); err != nil {
			return fmt.Errorf("delay.percent: %w", err)
		}
		if d.Duration < 0 {
			return fmt.Errorf("delay.duration: %v is negative", d.Duration)
		}
	}
	if a := f.Abort; a != nil {
		if err := validPercent(a.Percent); err != nil {
			return fmt.Errorf("abort.percent: %w", err)
		}
		if _, err := ParseCode(a.Code); err != nil {
			return fmt.Errorf("abort.code: %w", err)
		}
	}
	return nil
}

func validPercent(p float64) error {
	if !(p >= 0 && p <= 100) { // also rejects NaN
		return fmt.Errorf("%v is not in 0..100", p)
	}
	return nil
}

// codesByName maps a code name, lower-cased and without underscores, to the
// code, so both spellings in use resolve without a hand-kept table.
var codesByName = func() map[string]codes.Code {
	m := make(map[string]codes.Code)
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		m[strings.ToLower(c.String())] = c
	}
	return m
}()

// ParseCode returns the gRPC code named s ("UNAVAILABLE", "Unavailable",
// "deadline_exceeded", …). OK is refused: an abort must be an error.
func ParseCode(s string) (codes.Code, error) {
	c, ok := codesByName[strings.ToLower(strings.ReplaceAll(s, "_", ""))]
	switch {
	case !ok:
		return 0, fmt.Errorf("%q is not a gRPC code name", s)
	case c == codes.OK:
		return 0, fmt.Errorf("%q is not an error code", s)
	}
	return c, nil
}

// Option configures New.
type Option func(*options)

type options struct {
	rand          func() float64
	meterProvider metric.MeterProvider
}

// WithRand replaces the source of the percent draws; r must return values
// in [0, 1) and be safe for concurrent use. A call is hit when r()*100 <
// Percent, so 0 never hits and 100 always does.
func WithRand(r func() float64) Option {
	return func(o *options) { o.rand = r }
}

// WithMeterProvider records metrics through mp instead of the global
// otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// rule is one validated fault, ready to apply.
type rule struct {
	delay        time.Duration
	delayPercent float64 // 0 when the fault has no delay
	abortPercent float64 // 0 when the fault has no abort
	abortCode    codes.Code
	abortAfter   bool
}

// ruleSet is an immutable snapshot of the faults in force. Replacing the
// whole set atomically lets the hot path read it with one atomic load and
// no lock, and a request always sees one consistent configuration.
type ruleSet struct {
	byMethod map[string]*rule
	all      *rule // the "*" fault, if any
	config   map[string]Fault
}

func (s *ruleSet) match(method string) *rule {
	if r, ok := s.byMethod[method]; ok {
		return r
	}
	return s.all
}

// methodStats counts what happened to one method. Its attribute options are
// built once so recording does not allocate.
type methodStats struct {
	seen, delays, aborts, interrupted atomic.Int64
	delayAttrs, abortAttrs            metric.MeasurementOption
}

// Injector holds the faults in force and applies them. Its zero value is not
// usable; create it with New.
type Injector struct {
	rand     func() float64
	injected metric.Int64Counter

	rules atomic.Pointer[ruleSet] // nil when no fault is configured

	// stats maps a method to its counters. Copy-on-write: the set of
	// methods is small and fixed after the first calls, so readers look up a
	// plain map without locking or allocating; writers (first call of a
	// method) copy it under statsMu.
	// (gRPC answers unknown methods itself, before any middleware, so only
	// registered methods ever get here.)
	stats   atomic.Pointer[map[string]*methodStats]
	statsMu sync.Mutex
}

// New returns an injector applying initial, keyed by full method
// ("/user.v1.UserService/GetUser") or "*". It fails, naming the method and
// field, if a key or fault is invalid. An empty or nil map injects nothing.
func New(initial map[string]Fault, opts ...Option) (*Injector, error) {
	o := options{rand: rand.Float64}
	for _, opt := range opts {
		opt(&o)
	}
	if o.meterProvider == nil {
		o.meterProvider = otel.GetMeterProvider()
	}
	i := &Injector{rand: o.rand}
	var err error
	i.injected, err = o.meterProvider.Meter("github.com/rampart-go/rampart/internal/middleware/faults").
		Int64Counter(MetricInjected,
			metric.WithDescription("Faults injected into server requests, by method and kind (delay, abort)."),
			metric.WithUnit("{fault}"))
	if err != nil {
		// The API returns a no-op counter with the error: report, carry on.
		otel.Handle(err)
	}
	empty := map[string]*methodStats{}
	i.stats.Store(&empty)
	if err := i.Set(initial); err != nil {
		return nil, err
	}
	return i, nil
}

// Set replaces all faults with faults, or leaves them unchanged and returns
// an error naming the method and field if any is invalid. A nil or empty
// map turns injection off.
func (i *Injector) Set(faults map[string]Fault) error {
	set, err := compile(faults)
	if err != nil {
		return err
	}
	i.rules.Store(set)
	return nil
}

// Clear turns injection off.
func (i *Injector) Clear() { i.rules.Store(nil) }

// Faults returns a copy of the faults in force.
func (i *Injector) Faults() map[string]Fault {
	out := map[string]Fault{}
	if s := i.rules.Load(); s != nil {
		for m, f := range s.config {
			out[m] = copyFault(f)
		}
	}
	return out
}

// compile validates faults and builds their rule set; nil when there are
// none, which is what keeps the hot path at one atomic load.
func compile(faults map[string]Fault) (*ruleSet, error) {
	if len(faults) == 0 {
		return nil, nil
	}
	// Sorted so that with several bad entries the error is the same every time.
	methods := make([]string, 0, len(faults))
	for m := range faults {
		methods = append(methods, m)
	}
	sort.Strings(methods)

	set := &ruleSet{byMethod: map[string]*rule{}, config: map[string]Fault{}}
	for _, m := range methods {
		f := faults[m]
		if err := validMethod(m); err != nil {
			return nil, fmt.Errorf("fault %q: %w", m, err)
		}
		if err := f.Validate(); err != nil {
			return nil, fmt.Errorf("fault %q: %w", m, err)
		}
		r := &rule{}
		if f.Delay != nil {
			r.delay, r.delayPercent = f.Delay.Duration, f.Delay.Percent
		}
		if f.Abort != nil {
			r.abortCode, _ = ParseCode(f.Abort.Code) // validated above
			r.abortPercent, r.abortAfter = f.Abort.Percent, f.Abort.After
		}
		if m == AllMethods {
			set.all = r
		} else {
			set.byMethod[m] = r
		}
		set.config[m] = copyFault(f) // the caller may reuse its pointers
	}
	return set, nil
}

// validMethod accepts "*" or a gRPC full method "/package.Service/Method",
// so a key that could never match (a typo, a missing slash) is refused
// instead of silently injecting nothing.
func validMethod(m string) error {
	if m == AllMethods {
		return nil
	}
	// The injector matches the full method gRPC reports, which starts with
	// a slash: a key without one would never match and inject nothing.
	if _, _, ok := rpc.SplitMethod(m); !ok || !strings.HasPrefix(m, "/") || strings.ContainsAny(m, " \t") {
		return fmt.Errorf(`method: want "*" or "/package.Service/Method"`)
	}
	return nil
}

func copyFault(f Fault) Fault {
	if f.Delay != nil {
		d := *f.Delay
		f.Delay = &d
	}
	if f.Abort != nil {
		a := *f.Abort
		f.Abort = &a
	}
	return f
}

// Middleware returns the Kratos server middleware that applies the faults.
// With none configured a request costs one atomic load of the rule set plus
// its Seen count (a lock-free map lookup and an atomic add), and allocates
// nothing.
func (i *Injector) Middleware() middleware.Middleware {
	return func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, req any) (any, error) {
			method := rpc.ServerOperation(ctx)
			st := i.statsFor(method)
			st.seen.Add(1)
			set := i.rules.Load()
			if set == nil {
				return next(ctx, req)
			}
			r := set.match(method)
			if r == nil {
				return next(ctx, req)
			}
			return i.apply(ctx, req, next, method, st, r)
		}
	}
}

// apply runs next with the fault r.
func (i *Injector) apply(ctx context.Context, req any, next middleware.Handler, method string, st *methodStats, r *rule) (any, error) {
	if i.hit(r.delayPercent) {
		st.delays.Add(1)
		i.injected.Add(ctx, 1, st.delayAttrs)
		if err := rpc.Sleep(ctx, r.delay); err != nil {
			// The caller gave up or its deadline passed while we held the
			// request: answer as a slow server would, and note it, which is
			// how a test proves the deadline reached this process.
			st.interrupted.Add(1)
			return nil, status.FromContextError(err).Err()
		}
	}
	if !i.hit(r.abortPercent) {
		return next(ctx, req)
	}
	if r.abortAfter {
		if _, err := next(ctx, req); err != nil {
			// The handler failed on its own: the call did not take effect,
			// so its genuine error is the truthful answer and nothing was
			// injected.
			return nil, err
		}
	}
	st.aborts.Add(1)
	i.injected.Add(ctx, 1, st.abortAttrs)
	return nil, abortError(r.abortCode, method, r.abortAfter)
}

// hit draws whether a fault with percent applies to this call. Percent 0
// never draws, so a fault with only an abort costs no draw for its delay.
func (i *Injector) hit(percent float64) bool {
	return percent > 0 && i.rand()*100 < percent
}

func abortError(code codes.Code, method string, after bool) error {
	when := "before"
	if after {
		when = "after"
	}
	return rpc.Error(code, rpc.ReasonFaultInjected, "fault injected: "+method+" aborted "+when+" the handler",
		map[string]string{"method": method, "kind": "abort"})
}

// Seen returns how many requests for method reached the injector: the
// server-side attempts, whether or not a fault was applied.
func (i *Injector) Seen(method string) int64 {
	if st, ok := (*i.stats.Load())[method]; ok {
		return st.seen.Load()
	}
	return 0
}

// statsFor returns the counters of method, creating them on first use.
func (i *Injector) statsFor(method string) *methodStats {
	if st, ok := (*i.stats.Load())[method]; ok {
		return st
	}
	i.statsMu.Lock()
	defer i.statsMu.Unlock()
	old := *i.stats.Load()
	if st, ok := old[method]; ok { // created while we waited for the lock
		return st
	}
	st := &methodStats{
		delayAttrs: metric.WithAttributeSet(attribute.NewSet(
			attribute.String("method", method), attribute.String("kind", "delay"))),
		abortAttrs: metric.WithAttributeSet(attribute.NewSet(
			attribute.String("method", method), attribute.String("kind", "abort"))),
	}
	next := make(map[string]*methodStats, len(old)+1)
	for m, s := range old {
		next[m] = s
	}
	next[method] = st
	i.stats.Store(&next)
	return st
}
