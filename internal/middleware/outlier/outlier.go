// Package outlier is per-instance outlier ejection for one client target, as
// Envoy's outlier detection and Finagle's failure accrual do it: an instance
// whose attempts keep failing leaves the balancer's choice for a while, so
// the instances that work take its calls.
//
// Why Rampart needs it: Kratos' P2C balancer scores instances by latency and
// counts only Unavailable, DeadlineExceeded and network errors as failures,
// so an instance that answers Internal or ResourceExhausted fast looks like
// the best one and keeps winning the pick; and the per-method breaker counts
// one instance's failures against the whole dependency. Measured before this
// package: with one of two user instances answering Internal, 200 of 200
// CreateOrder calls failed and the breaker opened, the healthy instance idle.
//
// Policy:
//   - Each attempt's outcome is judged by internal/rpc's classifier: a
//     failure of the peer (PeerFault: Unavailable, ResourceExhausted from the
//     server, Internal, Unknown, DataLoss, an attempt that timed out) adds
//     one to the instance's consecutive failures; any other answer resets
//     them. Attempts the client never sent, or that its caller cancelled,
//     say nothing about the instance.
//   - ConsecutiveFailures in a row eject the instance for BaseEjectionTime
//     times the number of times it has been ejected, at most
//     MaxEjectionTime (Envoy's rule). When the time is up the instance is
//     back in the balancer's choice: its next attempts are the probe, and a
//     failure ejects it again, for longer. An instance that stays in for
//     MaxEjectionTime starts again from one.
//   - A ResourceExhausted answered with a retry pushback keeps the instance
//     out for the pushback time, at once: it said how long it needs.
//   - Never more than MaxEjectionPercent of the instances (and never the
//     last one) are out at once: a dependency whose every instance fails is
//     the breaker's case, not ejection's, so those failures keep reaching
//     the breaker.
//
// Each ejection is logged at warn, adds an "outlier.ejected" event to the
// call's span and counts rampart_outlier_ejections_total{target,reason}.
package outlier

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/selector"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/rampart-go/rampart/internal/rpc"
)

// MetricEjections counts ejections per target and reason.
const MetricEjections = "rampart_outlier_ejections_total"

// Reasons an instance is ejected, the reason label of MetricEjections.
const (
	ReasonConsecutiveFailures = "consecutive_failures"
	ReasonPushback            = "pushback"
)

// maxPushback is the longest pushback that ejects an instance; a longer
// one is taken for a broken server's and the failure counts like any other.
const maxPushback = time.Hour

// Config is the ejection policy of one client target.
type Config struct {
	// ConsecutiveFailures in a row eject an instance; 0 turns ejection off.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// BaseEjectionTime is the first ejection's length; the n-th lasts n
	// times as long.
	BaseEjectionTime time.Duration `yaml:"base_ejection_time"`
	// MaxEjectionTime caps one ejection's length.
	MaxEjectionTime time.Duration `yaml:"max_ejection_time"`
	// MaxEjectionPercent caps the share of instances out at once, 0..100;
	// at least one of two or more may always be ejected.
	MaxEjectionPercent int `yaml:"max_ejection_percent"`
}

// DefaultConfig is Envoy's outlier detection defaults, except the share:
// Envoy ejects at most 10 % of a large cluster, which with the two or three
// instances a Rampart service runs would be none, so 50 %.
func DefaultConfig() Config {
	return Config{ConsecutiveFailures: 5, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second, MaxEjectionPercent: 50}
}

// Validate reports the first invalid field, named by its key.
func (c Config) Validate() error {
	switch {
	case c.ConsecutiveFailures < 0:
		return fmt.Errorf("consecutive_failures: must be >= 0 (0: no ejection), got %d", c.ConsecutiveFailures)
	case c.BaseEjectionTime <= 0:
		return fmt.Errorf("base_ejection_time: must be > 0, got %v", c.BaseEjectionTime)
	case c.MaxEjectionTime < c.BaseEjectionTime:
		return fmt.Errorf("max_ejection_time: must be at least base_ejection_time (%v), got %v", c.BaseEjectionTime, c.MaxEjectionTime)
	case c.MaxEjectionPercent < 0 || c.MaxEjectionPercent > 100:
		return fmt.Errorf("max_ejection_percent: must be in 0..100, got %d", c.MaxEjectionPercent)
	}
	return nil
}

// Option configures New.
type Option func(*options)

type options struct {
	now    func() time.Time
	mp     metric.MeterProvider
	logger log.Logger
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithMeterProvider sets where the ejection counter is recorded; the
// default is otel.GetMeterProvider() when New runs.
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.mp = mp } }

// WithLogger sets where ejections are logged; the default is Kratos'
// global logger.
func WithLogger(l log.Logger) Option { return func(o *options) { o.logger = l } }

// Detector tracks the instances of one target. Its Interceptor records
// outcomes and its Filter keeps ejected instances out of the pick.
type Detector struct {
	target string
	cfg    Config
	now    func() time.Time
	log    *log.Helper

	ejections metric.Int64Counter
	reasonSet map[string]metric.AddOption

	known   atomic.Int64 // instances in the balancer's last list
	ejected atomic.Int64 // instances out now, maybe stale high: Filter re-checks the time
	tracked atomic.Int64 // len(hosts): instances with a failure or an ejection on record

	mu    sync.Mutex
	hosts map[string]*host
}

type host struct {
	consecutive  int
	ejections    int       // how many times in a row it was ejected
	ejectedUntil time.Time // zero when in
	backSince    time.Time // when its last ejection ended
}

// New returns the detector of target. A Config with ConsecutiveFailures 0
// still honours pushback.
func New(target string, cfg Config, opts ...Option) *Detector {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.mp == nil {
		o.mp = otel.GetMeterProvider()
	}
	if o.logger == nil {
		o.logger = log.GetLogger()
	}
	d := &Detector{target: target, cfg: cfg, now: o.now, log: log.NewHelper(o.logger), hosts: map[string]*host{}}
	var err error
	d.ejections, err = o.mp.Meter("github.com/rampart-go/rampart/internal/middleware/outlier").Int64Counter(MetricEjections,
		metric.WithDescription("Instances ejected from the balancer's choice, by reason."), metric.WithUnit("{ejection}"))
	if err != nil {
		otel.Handle(err)
	}
	d.reasonSet = map[string]metric.AddOption{}
	for _, r := range []string{ReasonConsecutiveFailures, ReasonPushback} {
		d.reasonSet[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("target", target), attribute.String("reason", r)))
	}
	return d
}

// attemptState is what one attempt needs beyond the caller's options: the
// instance it reached, its trailer and the two call options that fill them,
// in one allocation. The options are used by pointer, so boxing them as
// grpc.CallOption allocates nothing more.
type attemptState struct {
	peer      peer.Peer
	trailer   metadata.MD
	peerOpt   grpc.PeerCallOption
	trailerOp grpc.TrailerCallOption
	opts      [6]grpc.CallOption
}

// Interceptor records each attempt's outcome against the instance that
// served it. It belongs between the breaker and the attempt timeout, where
// it sees one attempt and, in its context, the caller's whole call.
//
// A success while no instance has a failure on record changes nothing, so
// it returns before naming the instance. Under retry, which has gRPC fill
// an rpc.AttemptReport for each attempt, the interceptor reads that
// report and the healthy path allocates nothing; otherwise (a call made
// once, a hedged call) it asks gRPC itself, for one allocation.
func (d *Detector) Interceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if r := rpc.ReportIn(opts); r != nil {
			err := invoker(ctx, method, req, reply, cc, opts...)
			d.observe(ctx, r.Peer.Addr, err, r.Trailer)
			return err
		}
		st := &attemptState{}
		st.peerOpt.PeerAddr, st.trailerOp.TrailerAddr = &st.peer, &st.trailer
		callOpts := append(append(st.opts[:0], opts...), &st.peerOpt, &st.trailerOp)
		err := invoker(ctx, method, req, reply, cc, callOpts...)
		d.observe(ctx, st.peer.Addr, err, st.trailer)
		return err
	}
}

// observe records an attempt that reached addr (nil: none) and ended with
// err, unless it changes nothing.
func (d *Detector) observe(ctx context.Context, addr net.Addr, err error, trailer metadata.MD) {
	if addr == nil || (err == nil && d.tracked.Load() == 0) {
		return
	}
	d.record(ctx, addr.String(), rpc.Classify(ctx, err), trailer)
}

// record applies one outcome to addr.
func (d *Detector) record(ctx context.Context, addr string, o rpc.Outcome, trailer metadata.MD) {
	if o.Code == codes.Canceled {
		return // the caller gave up: nothing learnt about the instance
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.hosts[addr]
	if h == nil {
		if !o.PeerFault {
			return // a healthy instance with no history: nothing to reset
		}
		h = &host{}
		d.hosts[addr] = h
		d.tracked.Store(int64(len(d.hosts)))
	}
	now := d.now()
	if !h.backSince.IsZero() && now.Sub(h.backSince) >= d.cfg.MaxEjectionTime {
		h.ejections, h.backSince = 0, time.Time{}
	}
	if !o.PeerFault {
		h.consecutive = 0
		if h.ejections == 0 && !now.Before(h.ejectedUntil) {
			// Nothing left to remember: the success fast path is back.
			delete(d.hosts, addr)
			d.tracked.Store(int64(len(d.hosts)))
		}
		return
	}
	h.consecutive++
	if wait, pushedBack, _ := rpc.Pushback(trailer); pushedBack && wait <= maxPushback && o.Code == codes.ResourceExhausted && o.Origin == rpc.OriginServer {
		if wait > 0 {
			d.ejectLocked(ctx, addr, h, now, wait, ReasonPushback)
		}
		return
	}
	if d.cfg.ConsecutiveFailures > 0 && h.consecutive >= d.cfg.ConsecutiveFailures {
		length := min(d.cfg.BaseEjectionTime*time.Duration(h.ejections+1), d.cfg.MaxEjectionTime)
		if d.ejectLocked(ctx, addr, h, now, length, ReasonConsecutiveFailures) {
			h.ejections++
		}
	}
}

// ejectLocked ejects h for length unless the share rule forbids it.
func (d *Detector) ejectLocked(ctx context.Context, addr string, h *host, now time.Time, length time.Duration, reason string) bool {
	if now.Before(h.ejectedUntil) {
		if until := now.Add(length); until.After(h.ejectedUntil) {
			h.ejectedUntil, h.backSince = until, until
		}
		return false
	}
	out := 0
	for _, other := range d.hosts {
		if now.Before(other.ejectedUntil) {
			out++
		}
	}
	known := int(d.known.Load())
	if known < 2 || out+1 > max(1, known*d.cfg.MaxEjectionPercent/100) || out+1 >= known {
		return false
	}
	h.ejectedUntil, h.backSince, h.consecutive = now.Add(length), now.Add(length), 0
	d.ejected.Store(int64(out + 1))
	d.ejections.Add(ctx, 1, d.reasonSet[reason])
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("outlier.ejected", trace.WithAttributes(
			attribute.String("server.address", addr),
			attribute.String("rampart.outlier.reason", reason),
			attribute.Int64("rampart.outlier.ejection_ms", length.Milliseconds()),
		))
	}
	d.log.Warnf("outlier: %s instance %s ejected for %s (%s)", d.target, addr, length, reason)
	return true
}

// Filter is a Kratos node filter that leaves ejected instances out of the
// balancer's choice. If that would leave none, it leaves them all in.
func (d *Detector) Filter() selector.NodeFilter {
	return func(_ context.Context, nodes []selector.Node) []selector.Node {
		d.known.Store(int64(len(nodes)))
		if d.ejected.Load() == 0 {
			return nodes
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		now := d.now()
		kept := make([]selector.Node, 0, len(nodes))
		out := 0
		for _, n := range nodes {
			if h := d.hosts[n.Address()]; h != nil && now.Before(h.ejectedUntil) {
				out++
				continue
			}
			kept = append(kept, n)
		}
		d.ejected.Store(int64(out))
		d.forgetGoneLocked(nodes)
		if len(kept) == 0 {
			return nodes
		}
		return kept
	}
}

// forgetGoneLocked drops instances no longer listed once the map holds
// many more than the list: ports change with every restart.
func (d *Detector) forgetGoneLocked(nodes []selector.Node) {
	if len(d.hosts) <= 2*len(nodes)+8 {
		return
	}
	for addr := range d.hosts {
		if !slices.ContainsFunc(nodes, func(n selector.Node) bool { return n.Address() == addr }) {
			delete(d.hosts, addr)
		}
	}
	d.tracked.Store(int64(len(d.hosts)))
}

// Ejected returns the instances out now, sorted, for tests and debugging.
func (d *Detector) Ejected() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	var out []string
	for addr, h := range d.hosts {
		if now.Before(h.ejectedUntil) {
			out = append(out, addr)
		}
	}
	slices.Sort(out)
	return out
}
