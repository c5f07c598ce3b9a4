package multihost_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/rpc"
	"github.com/rampart-go/rampart/test/chaos"
	"github.com/rampart-go/rampart/test/multihost"
)

const (
	// callTimeout is the driver's deadline on every call: longer than
	// the client chain's own budget (clients.*.timeout, 2 s), so the
	// driver never hides a slow answer.
	callTimeout = 5 * time.Second
	// attemptTimeout is the chain's per-attempt deadline
	// (clients.user.attempt_timeout, which the driver's chains copy).
	attemptTimeout = 500 * time.Millisecond
	// methodTimeout is the chain's budget for one call, retries included
	// (clients.user.timeout).
	methodTimeout = 2 * time.Second
	// streak is how long a run of successes must last to count as
	// recovered.
	streak = time.Second
)

// mode holds the figures that differ between the short run (make
// test-multihost) and the long one (make chaos-multihost).
type mode struct {
	rate       int           // calls per second of each client (CreateOrder, GetUserProfile)
	warmup     time.Duration // load before the fault
	after      time.Duration // load after the fault ended and a served again
	blackhole  time.Duration // scenario 1
	partition  time.Duration // scenarios 2 and 3
	loss       time.Duration // scenario 4, each rate
	dbDown     time.Duration // scenario 6, blackhole
	dbSlow     time.Duration // scenario 6, latency
	flap       time.Duration // scenario 7, up/down every flapEvery
	flapEvery  time.Duration
	backWithin time.Duration // how long to wait for traffic back on a after a fault
	slack      float64       // chaos.Limit's
}

// current is the run's mode. The long run keeps the short one's rate (120
// calls/s in all) and lengthens the faults: at 200 calls/s the 2 shared
// CPUs left the servers shedding load before any fault (healthy p99 above
// 200 ms), and the figures measured the machine.
func current() mode {
	if *long {
		return mode{
			rate: 60, warmup: 5 * time.Second, after: 10 * time.Second,
			blackhole: 10 * time.Second, partition: 20 * time.Second, loss: 15 * time.Second,
			dbDown: 5 * time.Second, dbSlow: 15 * time.Second, flap: 20 * time.Second, flapEvery: 2 * time.Second,
			backWithin: 90 * time.Second,
		}
	}
	return mode{
		rate: 60, warmup: 2 * time.Second, after: 2 * time.Second,
		blackhole: 4 * time.Second, partition: 6 * time.Second, loss: 4 * time.Second,
		dbDown: 3 * time.Second, dbSlow: 4 * time.Second, flap: 8 * time.Second, flapEvery: 2 * time.Second,
		backWithin: 35 * time.Second, slack: 2,
	}
}

// routed is where one call went: the host of the instance that answered
// its last attempt ("" when no attempt got an answer).
type routed struct {
	start  time.Time
	host   string
	ok     bool
	code   codes.Code
	reason string // the ErrorInfo reason of a failed call's status
	err    string // the status message of a failed call
}

// routedCall records one call that started at start and ended with err,
// its last attempt answered by p.
func routedCall(start time.Time, p *peer.Peer, err error) routed {
	st := status.Convert(err)
	return routed{start: start, host: hostOf(p.Addr), ok: err == nil, code: st.Code(), reason: rpc.Reason(st), err: st.Message()}
}

// load is the steady load of a scenario from ctl: CreateOrder (each with a
// fresh idempotency key) and GetUserProfile, each at the mode's rate,
// through the driver's clients over discovery, recording where each call
// went.
type load struct {
	orders   *chaos.OrderCalls
	oRun     *chaos.Running
	pRun     *chaos.Running
	mu       sync.Mutex
	oRoutes  []routed
	pRoutes  []routed
	begin    time.Time
	profiled string
}

// hostOf names the test host of addr.
func hostOf(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	h, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return ""
	}
	for _, x := range multihost.Hosts {
		if x.IP == h {
			return x.Name
		}
	}
	return h
}

func startLoad(ctx context.Context, order orderv1.OrderServiceClient, user userv1.UserServiceClient, buyer, profiled string, rate int, d time.Duration) *load {
	l := &load{orders: chaos.NewOrderCalls(buyer, order), begin: time.Now(), profiled: profiled}
	l.oRun = chaos.Start(ctx, chaos.Load{Rate: rate, Duration: d, Timeout: callTimeout, Call: func(ctx context.Context) error {
		var p peer.Peer
		start := time.Now()
		err := l.orders.CallWith(ctx, grpc.Peer(&p))
		l.record(&l.oRoutes, routedCall(start, &p, err))
		return err
	}})
	l.pRun = chaos.Start(ctx, chaos.Load{Rate: rate, Duration: d, Timeout: callTimeout, Call: func(ctx context.Context) error {
		var p peer.Peer
		start := time.Now()
		_, err := user.GetUserProfile(ctx, &userv1.GetUserProfileRequest{Id: profiled}, grpc.Peer(&p))
		l.record(&l.pRoutes, routedCall(start, &p, err))
		return err
	}})
	return l
}

func (l *load) record(to *[]routed, r routed) {
	l.mu.Lock()
	*to = append(*to, r)
	l.mu.Unlock()
}

// servedBy returns the start of the first successful call of either
// client, started at or after from, that host answered.
func (l *load) servedBy(host string, from time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	first, found := time.Time{}, false
	for _, rs := range [][]routed{l.oRoutes, l.pRoutes} {
		for _, r := range rs {
			if r.ok && r.host == host && !r.start.Before(from) && (!found || r.start.Before(first)) {
				first, found = r.start, true
			}
		}
	}
	return first, found
}

// reasons counts the distinct messages of the failed calls of rs started
// in [from, to), the most frequent first, at most n of them.
func reasons(rs []routed, from, to time.Time, n int) string {
	count := map[string]int{}
	for _, r := range rs {
		if !r.ok && !r.start.Before(from) && r.start.Before(to) {
			count[r.err]++
		}
	}
	msgs := make([]string, 0, len(count))
	for m := range count {
		msgs = append(msgs, m)
	}
	slices.SortFunc(msgs, func(a, b string) int { return count[b] - count[a] })
	var out []string
	for _, m := range msgs[:min(n, len(msgs))] {
		out = append(out, fmt.Sprintf("%d× %q", count[m], m))
	}
	return strings.Join(out, ", ")
}

// share is the fraction of the successful calls of rs started in
// [from, to) that host answered.
func share(rs []routed, host string, from, to time.Time) (float64, int) {
	n, on := 0, 0
	for _, r := range rs {
		if !r.ok || r.start.Before(from) || !r.start.Before(to) {
			continue
		}
		n++
		if r.host == host {
			on++
		}
	}
	if n == 0 {
		return 0, 0
	}
	return float64(on) / float64(n), n
}

func (l *load) stop() {
	l.oRun.Stop()
	l.pRun.Stop()
}

// wait returns the record of each client once every call ended.
func (l *load) wait() (orders, profiles chaos.Calls) { return l.oRun.Wait(), l.pRun.Wait() }

// steer is how long after from the calls of cs kept failing or taking
// longer than slow: the start of the last such call in [from, to) minus
// from, and false if there was none.
func steer(cs chaos.Calls, from, to time.Time, slow time.Duration) (time.Duration, bool) {
	last, ok := cs.Between(from, to).LastWhere(func(c chaos.Call) bool { return c.Code != codes.OK || c.Latency > slow })
	if !ok {
		return 0, false
	}
	return last.Sub(from), true
}

// retryable reports whether a failed call's code is one a caller may
// send again (with the same idempotency key for CreateOrder).
func retryable(c chaos.Call) bool {
	switch c.Code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return true
	}
	return false
}

// resend sends every failed CreateOrder of l again with its key, and
// returns the ids it got back and how many failed again.
func resend(ctx context.Context, order orderv1.OrderServiceClient, l *load) (ids []string, failed []error) {
	for _, key := range l.orders.FailedKeys() {
		var reply *orderv1.CreateOrderReply
		var err error
		// The chain retries within its own budget; a caller retrying a
		// failed call waits a little and tries again, as this one does.
		for range 5 {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			reply, err = order.CreateOrder(cctx, l.orders.Request(key))
			cancel()
			if err == nil || status.Code(err) == codes.InvalidArgument {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			failed = append(failed, err)
			continue
		}
		ids = append(ids, reply.GetOrder().GetId())
	}
	return ids, failed
}

// checkStored counts buyer's orders in the database: every acknowledged
// id there once, as many orders as acknowledged ids, every order with its
// key. It reports the count as a note.
func (sc *scenario) checkStored(t *testing.T, ctx context.Context, dsn, buyer string, acked []string, resent int) {
	t.Helper()
	st, err := chaos.StoredOrders(ctx, dsn, buyer)
	if err != nil {
		t.Fatal(err)
	}
	missing, twice, breaches := st.Verify(acked)
	sc.note("orders acknowledged: %d (%d of them failed calls sent again with their keys after recovery); in the database: %d, each with its key: %t; acknowledged but not stored: %d; stored twice: %d.",
		len(acked), resent, st.Orders, st.Keyed == st.Orders, missing, twice)
	for _, b := range breaches {
		t.Error(b)
	}
}

// scenario collects a scenario's table and notes and logs them when it
// ends, passed or not; the long run writes them into the report.
type scenario struct {
	name    string // the subtest's, which names the picture
	title   string
	passed  bool
	rows    []chaos.Row
	notes   []string
	series  []chaos.Series
	windows []chaos.Window
}

var report struct {
	sync.Mutex
	all []*scenario
}

func newScenario(t *testing.T, name, title string) *scenario {
	sc := &scenario{name: name, title: title}
	t.Cleanup(func() {
		sc.passed = !t.Failed()
		t.Logf("%s (%s)\n%s  %s", title, verdict(sc.passed), chaos.Table(sc.rows), strings.Join(sc.notes, "\n  "))
		report.Lock()
		report.all = append(report.all, sc)
		report.Unlock()
	})
	return sc
}

func verdict(passed bool) string {
	if passed {
		return "assertions met"
	}
	return "**assertion missed**"
}

func (sc *scenario) row(r chaos.Row) { sc.rows = append(sc.rows, r) }

func (sc *scenario) note(format string, args ...any) {
	sc.notes = append(sc.notes, fmt.Sprintf(format, args...))
}
