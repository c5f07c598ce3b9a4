package chaos_test

import (
	"context"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"google.golang.org/grpc/codes"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/server"
	"github.com/rampart-go/rampart/test/chaos"
)

// slowCall is when the report counts a call as affected by a fault: one
// attempt timed out, one backoff, one normal call on a quiet machine.
const slowCall = attemptTimeout + firstBackoff + normalCall

// sampler polls one counter of an instance's /metrics in the background.
type sampler struct {
	mu      sync.Mutex
	samples []sample
	stop    context.CancelFunc
	done    chan struct{}
}

type sample struct {
	at    time.Time
	value float64
}

func startSampler(ctx context.Context, p *devstack.ServiceProc, name, label string, every time.Duration) *sampler {
	ctx, stop := context.WithCancel(ctx)
	s := &sampler{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			if m, err := scrape(ctx, p.HTTPAddr); err == nil {
				s.mu.Lock()
				s.samples = append(s.samples, sample{at: time.Now(), value: sum(m, name, label)})
				s.mu.Unlock()
			}
			sleepCtx(ctx, every)
		}
	}()
	return s
}

// finish stops sampling and returns the samples.
func (s *sampler) finish() []sample {
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// lastRise returns when the counter was first seen at its final value: the
// last time it went up, to the sampling period. ok is false if it never
// went up after from.
func lastRise(samples []sample, from time.Time) (time.Time, bool) {
	if len(samples) == 0 {
		return time.Time{}, false
	}
	final := samples[len(samples)-1].value
	var base float64
	for _, s := range samples {
		if s.at.Before(from) {
			base = s.value
			continue
		}
		if s.value == final {
			return s.at, final > base
		}
	}
	return time.Time{}, false
}

// valueAt returns the counter's value as last sampled before t (at t
// included), 0 if no sample was taken by then.
func valueAt(samples []sample, t time.Time) float64 {
	var v float64
	for _, s := range samples {
		if s.at.After(t) {
			break
		}
		v = s.value
	}
	return v
}

// firstRise returns when the counter was first seen above its value at from.
func firstRise(samples []sample, from time.Time) (time.Time, bool) {
	var base float64
	for _, s := range samples {
		if s.at.Before(from) {
			base = s.value
			continue
		}
		if s.value > base {
			return s.at, true
		}
	}
	return time.Time{}, false
}

// rampartUser dials user of s the way the services dial each other: the
// composition root's Setup (P2C), then its Dialer with the client chain of
// configs/order.yaml's defaults, in mtls with a certificate.
func rampartUser(t *testing.T, s *devstack.Stack) userv1.UserServiceClient {
	t.Helper()
	cl := middleware.DefaultClientConfig()
	cl.Target = "discovery:///user"
	reg := consul.New(devstacktest.StackConsul(t, s))
	t.Cleanup(func() { _ = reg.Close() })
	server.Setup()
	clients := middleware.NewClients(middleware.ClientConfigs{"user": cl}, log.NewStdLogger(io.Discard), nil)
	conn, cleanup, err := server.NewDialer(reg, clients, devstacktest.Certificates(t, s)).Dial("user")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return userv1.NewUserServiceClient(conn)
}

// failover runs scenarios 1 and 2: the same load through order and through
// three clients of user side by side (Rampart's chain, the seed's pattern,
// Kratos' stock client), then fault hits the user instance the seed client
// is connected to; heal undoes it (nil for a crash). label names the fault
// in the picture. It returns when the fault hit and how long Consul took
// to show the instance critical.
func failover(t *testing.T, sc *scenario, faultLen time.Duration, label string,
	fault func(p *devstack.ServiceProc) error, heal func(p *devstack.ServiceProc) error,
) (faultAt time.Time, critical time.Duration) {
	m := current()
	ctx := devstacktest.Context(t, 3*time.Minute)
	s := startStack(t, ctx, stackOpts{users: 2, orders: 1})
	buyer := newBuyer(t, ctx, s)
	order := s.Instances("order")[0]
	consulAPI := devstacktest.StackConsul(t, s)

	certs := devstacktest.Certificates(t, s)
	seedConn, err := chaos.DialSeed(ctx, consulAPI, "user", devstacktest.Credentials(certs, "user"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = seedConn.Conn.Close() })
	var victim *devstack.ServiceProc
	for _, p := range s.Instances("user") {
		if p.GRPCAddr == seedConn.Addr {
			victim = p
		}
	}
	if victim == nil {
		t.Fatalf("the seed client dialled %s, which is no user instance of this stack", seedConn.Addr)
	}
	victimID := serviceID(t, ctx, consulAPI, "user", victim)
	seedUser := userv1.NewUserServiceClient(seedConn.Conn)
	rampart := rampartUser(t, s)
	callGetUser := func(c userv1.UserServiceClient) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.GetUser(ctx, &userv1.GetUserRequest{Id: buyer})
			return err
		}
	}

	total := m.warmup + faultLen + m.after
	users := s.Instances("user")
	seenUsers := newSeenTracker(t, ctx, getUser, users)
	retriedBefore := retries(t, ctx, order)
	stock := startStock(t, ctx, s, buyer, m.rate, total)
	orders := newOrderCalls(t, s, []*devstack.ServiceProc{order}, buyer)
	loads := []*chaos.Running{
		chaos.Start(ctx, chaos.Load{Rate: m.rate, Duration: total, Timeout: callTimeout, Call: orders.Call}),
		chaos.Start(ctx, chaos.Load{Rate: m.rate, Duration: total, Timeout: callTimeout, Call: callGetUser(rampart)}),
		chaos.Start(ctx, chaos.Load{Rate: m.rate, Duration: total, Timeout: callTimeout, Call: callGetUser(seedUser)}),
	}
	retrySamples := startSampler(ctx, order, "rampart_client_retries_total", `method="`+getUser+`"`, 100*time.Millisecond)

	sleepCtx(ctx, m.warmup)
	seenUsers.read(t, ctx) // the victim's last count before the fault
	faultAt = time.Now()
	if err := fault(victim); err != nil {
		t.Fatal(err)
	}
	criticalAt, critErr := waitCritical(ctx, consulAPI, "user", victimID, 10*time.Second)
	sleepCtx(ctx, faultLen-time.Since(faultAt))
	var healedAt time.Time
	if heal != nil {
		if err := heal(victim); err != nil {
			t.Fatal(err)
		}
		healedAt = time.Now()
	}
	viaOrder, direct, seedCalls := loads[0].Wait(), loads[1].Wait(), loads[2].Wait()
	stockCalls := stock.wait(t)
	if heal == nil {
		healedAt = time.Now() // a crashed instance stays down to the end of the run
	}
	sc.fault(faultAt, healedAt, label)
	if critErr == nil {
		sc.fault(faultAt, criticalAt, "until Consul shows it critical")
	}
	samples := retrySamples.finish()
	retried := retries(t, ctx, order) - retriedBefore
	reached := seenUsers.read(t, ctx)

	affected := func(c chaos.Call) bool { return c.Code != codes.OK || c.Latency > slowCall }
	recovered := func(cs chaos.Calls) string {
		last, ok := cs.Between(faultAt, time.Now()).LastWhere(affected)
		switch {
		case !ok:
			return "no call affected"
		case len(cs) > 0 && cs[len(cs)-1].Start.Sub(last) < 500*time.Millisecond:
			return "never (still failing at the end)"
		default:
			return Dur(last.Sub(faultAt))
		}
	}
	sc.row(chaos.Row{
		Client: "Rampart, via order (CreateOrder → GetUser)", Calls: viaOrder,
		Attempts: attemptsPerRequest(retried, len(viaOrder)), Recover: recovered(viaOrder),
	})
	sc.row(chaos.Row{Client: "Rampart client (server.Dialer), GetUser", Calls: direct, Recover: recovered(direct)})
	sc.row(chaos.Row{Client: "baseline: seed-style client, GetUser", Calls: seedCalls, Attempts: "1 (no retry)", Recover: recovered(seedCalls)})
	sc.row(chaos.Row{Client: "baseline: Kratos stock client, GetUser", Calls: stockCalls, Attempts: "1 (no retry)", Recover: recovered(stockCalls)})
	sc.note("time to recover: from the fault until the start of the last call that failed or took longer than attempt timeout + first backoff + a normal call (%s).", Dur(slowCall))
	sc.note("user instances saw %d GetUser attempts from all four clients (%d requests in all).", reached, len(viaOrder)+len(direct)+len(seedCalls)+len(stockCalls))
	sc.note("failures by code: via order %s; Rampart client %s; seed %s; Kratos stock %s.",
		viaOrder.Failed().ByCode(), direct.Failed().ByCode(), seedCalls.Failed().ByCode(), stockCalls.Failed().ByCode())

	if critErr != nil {
		t.Errorf("Consul: %v", critErr)
		critical = time.Hour
	} else {
		critical = criticalAt.Sub(faultAt)
		sc.note("Consul showed the instance critical %s after the fault.", Dur(critical))
	}
	if last, ok := lastRise(samples, faultAt); ok {
		sc.note("order's last GetUser retry was counted %s after the fault (sampled every 100 ms).", Dur(last.Sub(faultAt)))
		if last.Sub(faultAt) > 2*time.Second && heal == nil {
			t.Errorf("order still retried GetUser %s after the crash: its client kept picking the dead instance", last.Sub(faultAt))
		}
	} else {
		sc.note("order made no GetUser retry after the fault: its balancer stopped picking the instance before any attempt failed.")
	}
	for _, r := range []struct {
		name  string
		calls chaos.Calls
	}{{"via order", viaOrder}, {"Rampart client", direct}} {
		if f := r.calls.Failed(); len(f) > 0 {
			t.Errorf("%s: %d of %d calls failed (%s)", r.name, len(f), len(r.calls), f.ByCode())
		}
	}
	if len(seedCalls.Failed()) == 0 {
		t.Errorf("the seed-style client lost no call: the fault did not hit its instance")
	}
	return faultAt, critical
}

// Dur is chaos.Dur, shorter to read in notes.
func Dur(d time.Duration) string { return chaos.Dur(d) }

// TestInstanceCrash is scenario 1: SIGKILL one of two user instances under
// load. No idempotent call fails, and within 2 s Consul shows the instance
// critical and order's client stops picking it.
func TestInstanceCrash(t *testing.T) {
	sc := newScenario(t, 1, "1. Instance crash: SIGKILL one of two user instances")
	_, crit := failover(t, sc, current().after, "user instance SIGKILLed", func(p *devstack.ServiceProc) error {
		return p.Signal(syscall.SIGKILL)
	}, nil)
	if crit > 2*time.Second {
		t.Errorf("Consul showed the crashed instance critical after %s, want <= 2s", crit)
	}
}

// TestInstanceHang is scenario 2: SIGSTOP one of two user instances for
// 5 s, then SIGCONT. No call fails, and p99 stays within one attempt
// timeout, one backoff and one normal call (m.limit).
func TestInstanceHang(t *testing.T) {
	sc := newScenario(t, 2, "2. Instance hang: SIGSTOP one of two user instances for 5 s, then SIGCONT")
	faultAt, _ := failover(t, sc, 5*time.Second, "user instance SIGSTOPped, until SIGCONT",
		func(p *devstack.ServiceProc) error { return p.Signal(syscall.SIGSTOP) },
		func(p *devstack.ServiceProc) error { return p.Signal(syscall.SIGCONT) })
	m := current()
	for _, r := range sc.rows[:2] {
		healthy := healthyAround(r.Calls, faultAt, time.Time{})
		sc.noteHealthy(r.Client+", healthy before the fault", healthy)
		if limit, why := m.limit(attemptTimeout+firstBackoff, normalCall, healthy); r.Calls.Quantile(0.99) > limit {
			t.Errorf("%s: p99 %s, want <= %s (attempt timeout + first backoff + a normal call: %s)", r.Client, r.Calls.Quantile(0.99), limit, why)
		}
	}
}
