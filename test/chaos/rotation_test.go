package chaos_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/cmd/devstack/demo"
	"github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/server"
	"github.com/rampart-go/rampart/internal/telemetry"
	"github.com/rampart-go/rampart/test/chaos"
)

const (
	listOrders     = "/order.v1.OrderService/ListOrders"
	getUserProfile = "/user.v1.UserService/GetUserProfile"
)

// TestCARotation is scenario 10: in mtls mode with ACLs on, the CA is
// rotated (a new key, devstack.RotateCA, with the management token) under
// CreateOrder and GetUserProfile load through the demo clients, so both
// hops, order -> user and user -> order, carry calls throughout. In the
// window after the new roots reached every instance and before the leaves
// did, a third user instance starts: every connection to and from it is a
// new handshake of an old leaf against new roots, on both hops. Once every
// instance shows a new leaf (rampart_mtls_leaf_expiry_timestamp_seconds on
// its /metrics), a third order instance starts, for new handshakes between
// new leaves. No call fails; the new instances serve and call.
//
// A handshake that fails does not fail a call by itself: the balancer
// leaves the connection out and picks another instance. Hence the
// assertions that the added instances took and made calls.
func TestCARotation(t *testing.T) {
	const (
		maxRoots  = 10 * time.Second // from CASetConfig to new roots at every instance
		maxLeaves = 90 * time.Second // to a new leaf at every instance: the agents wait up to 30 s
		maxServe  = 20 * time.Second // from an added instance's start to its first call each way
	)
	sc := newScenario(t, 10, "10. CA rotation under load: mtls with ACLs on, the CA's key replaced, every leaf re-issued")
	m := current()
	ctx := devstacktest.Context(t, 5*time.Minute)
	// Load shedding off: on this shared 2-CPU machine a CPU spike (another
	// suite, an instance starting) makes the servers shed a few calls, which
	// says nothing about the rotation (scenario 8 tests shedding). A
	// rotation that broke handshakes fails calls or leaves an added instance
	// without calls either way.
	noShedding := map[string]any{"server.shedding.enabled": false}
	s := startStack(t, ctx, stackOpts{users: 2, orders: 2, security: devstack.SecurityMTLS, configs: map[string]string{
		"user": configWith(t, "user", noShedding), "order": configWith(t, "order", noShedding),
	}})
	drv := newMTLSDriver(t, ctx, s)
	buyer, viewed := drv.newUser(t, ctx, "Chaos Buyer"), drv.newUser(t, ctx, "Chaos Viewer")
	if _, err := drv.clients.Order.CreateOrder(ctx, orderFor(viewed)); err != nil {
		t.Fatalf("first order of the viewed user: %v", err)
	}

	cw := newCertWatch(t, ctx, s, drv.src)
	oldMax := max(cw.latestExpiry(), drv.src.Expiry().Unix())
	// The offered load is the mode's rate, half through each method.
	rate := max(m.rate/2, 1)
	orders := chaos.Start(ctx, chaos.Load{Rate: rate, Duration: 4 * time.Minute, Timeout: callTimeout, Call: drv.errors.keep(func(ctx context.Context) error {
		_, err := drv.clients.Order.CreateOrder(ctx, orderFor(buyer))
		return err
	})})
	profiles := chaos.Start(ctx, chaos.Load{Rate: rate, Duration: 4 * time.Minute, Timeout: callTimeout, Call: drv.errors.keep(func(ctx context.Context) error {
		_, err := drv.clients.User.GetUserProfile(ctx, &userv1.GetUserProfileRequest{Id: viewed})
		return err
	})})
	t.Cleanup(func() { orders.Stop(); profiles.Stop(); orders.Wait(); profiles.Wait() })
	sleepCtx(ctx, m.warmup)

	rotated := time.Now()
	if err := devstack.RotateCA(ctx, devstacktest.StackConsul(t, s)); err != nil {
		t.Fatal(err)
	}
	cw.rotated, cw.oldMax = rotated, oldMax
	if !cw.until(t, ctx, rotated.Add(maxRoots), func() bool { return cw.all(func(w *watched) bool { return !w.rootsAt.IsZero() }) }) {
		t.Fatalf("new CA roots not at every instance within %s of CASetConfig:\n%s", maxRoots, cw.table())
	}
	leavesAtAdd := cw.count(func(w *watched) bool { return !w.leafAt.IsZero() })

	// Old leaves, new roots: a new user instance now handshakes with both
	// services' instances, as server (order -> user) and as client (user ->
	// order), while at least one side still presents the old leaf.
	addedUser := cw.add(t, ctx, s, "user", 3)
	ouMixed, ouAt := cw.firstCalls(t, ctx, addedUser, maxServe, serverCalls(getUser))
	uoMixed, uoAt := cw.firstCalls(t, ctx, addedUser, maxServe, clientCalls(listOrders))

	if !cw.until(t, ctx, rotated.Add(maxLeaves), func() bool {
		return cw.all(func(w *watched) bool { return !w.leafAt.IsZero() }) && !cw.driverLeafAt.IsZero()
	}) {
		t.Fatalf("a new leaf not at every instance within %s of CASetConfig:\n%s", maxLeaves, cw.table())
	}
	leavesDone := time.Now()
	sc.fault(rotated, leavesDone, "CA rotated, until every instance has a new leaf")
	driverLeaf := drv.src.Rotations()

	// New leaves on both sides: a new order instance takes the driver's
	// calls, calls user and is called by user.
	addedOrder := cw.add(t, ctx, s, "order", 3)
	_, newOrderServes := cw.firstCalls(t, ctx, addedOrder, maxServe, serverCalls(createOrder))
	_, newOrderCalls := cw.firstCalls(t, ctx, addedOrder, maxServe, clientCalls(getUser))
	_, newOrderCalled := cw.firstCalls(t, ctx, addedOrder, maxServe, serverCalls(listOrders))
	sleepCtx(ctx, m.after)
	orders.Stop()
	profiles.Stop()
	orderCalls, profileCalls := orders.Wait(), profiles.Wait()

	dm := drv.metrics(t, ctx)
	cw.poll(t, ctx)
	sc.row(chaos.Row{
		Client: "demo client (mTLS as devstack) → order.CreateOrder, order → user.GetUser", Calls: orderCalls,
		Attempts: attemptsPerRequest(sum(dm, "rampart_client_retries_total", `method="`+createOrder+`"`), len(orderCalls)),
		Recover:  "no recovery needed",
	})
	sc.row(chaos.Row{
		Client: "demo client (mTLS as devstack) → user.GetUserProfile, user → order.ListOrders", Calls: profileCalls,
		Attempts: attemptsPerRequest(sum(dm, "rampart_client_retries_total", `method="`+getUserProfile+`"`), len(profileCalls)),
		Recover:  "no recovery needed",
	})
	sc.note("stack: 2 user + 2 order instances in mtls mode on an agent with ACLs on (default deny, a token per service), load shedding off (server.shedding.enabled: false), then a 3rd user and a 3rd order instance as below; load %d calls/s through each of the demo clients' two methods, over Consul discovery with their client chain (attempts/req from the driver's own rampart_client_retries_total).", rate)
	sc.note("CA rotated %s into the load (devstack.RotateCA: CASetConfig with a new key of the other type, management token); load kept %s after the last new leaf.", Dur(m.warmup), Dur(m.after))
	sc.note("from CASetConfig, per instance (its /metrics: rampart_mtls_rotations_total{kind=\"roots\"} >= 1; rampart_mtls_leaf_expiry_timestamp_seconds later than every leaf issued before): %s; the driver's own leaf (devstack): %s (%d leaf rotation(s)).",
		cw.summary(), Dur(cw.driverLeafAt.Sub(rotated)), driverLeaf.Leaf)
	sc.note("user 3 started %s after CASetConfig, with new roots at every instance and %d of 4 instances on a new leaf; first GetUser served %s after its start (order → user handshake of an old leaf against new roots: %s), first ListOrders made %s after (user → order: %s).",
		Dur(addedUser.started.Sub(rotated)), leavesAtAdd, Dur(ouAt), yesNo(ouMixed), Dur(uoAt), yesNo(uoMixed))
	sc.note("order 3 started once every leaf was new (%s after CASetConfig): first CreateOrder served %s after its start, first GetUser made after %s, first ListOrders served after %s (new leaves on both sides, both hops).",
		Dur(leavesDone.Sub(rotated)), Dur(newOrderServes), Dur(newOrderCalls), Dur(newOrderCalled))
	hops := cw.attempts(t, ctx)
	sc.note("attempts on the hops between services (rpc_client_call_duration_seconds_count, every instance): %s.", hops)

	for _, r := range []struct {
		what  string
		calls chaos.Calls
	}{{"CreateOrder", orderCalls}, {"GetUserProfile", profileCalls}} {
		if f := r.calls.Failed(); len(f) > 0 {
			t.Errorf("%s: %d of %d calls failed (%s)", r.what, len(f), len(r.calls), f.ByCode())
		}
	}
	for _, w := range cw.instances {
		if !w.added && (w.leafRotations < 1 || w.rootRotations < 1) {
			t.Errorf("%s counts %.0f leaf and %.0f roots rotations in %s, want at least 1 each", w.name, w.leafRotations, w.rootRotations, server.MetricRotations)
		}
	}
	for _, e := range drv.errors.list() {
		sc.note("failed call started %s after CASetConfig: %v", signedDur(e.at.Sub(rotated)), e.err)
	}
	if !ouMixed && !uoMixed {
		t.Errorf("user 3 made its first handshakes only after every leaf involved was new (%d of 4 instances had one when it started): the window of old leaves and new roots was not tested", leavesAtAdd)
	}
}

// orderFor is a CreateOrder request of user with a fresh idempotency key.
func orderFor(user string) *orderv1.CreateOrderRequest {
	return &orderv1.CreateOrderRequest{IdempotencyKey: uuid.NewString(), UserId: user, Item: "pen", Quantity: 1}
}

// signedDur is Dur with a sign, for times before a reference.
func signedDur(d time.Duration) string {
	if d < 0 {
		return "-" + Dur(-d)
	}
	return Dur(d)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// mtlsDriver is the demo clients dialed over mTLS as
// devstack.ClientIdentity, which the stack's intentions let call every
// service, with a telemetry of their own whose /metrics counts their
// retries.
type mtlsDriver struct {
	clients *demo.Clients
	src     *consul.CertSource
	errors  callErrors
	metrics func(t *testing.T, ctx context.Context) devstack.Metrics
}

func newMTLSDriver(t *testing.T, ctx context.Context, s *devstack.Stack) *mtlsDriver {
	t.Helper()
	consulAPI := devstacktest.StackConsul(t, s)
	src := devstacktest.CertSource(t, consulAPI, devstack.ClientIdentity)
	tel, err := telemetry.New(ctx, telemetry.Config{TracesExporter: "none"},
		telemetry.ResourceInfo{ServiceName: "chaos-driver", InstanceID: "chaos-driver"},
		telemetry.WithLookup(func(string) (string, bool) { return "", false }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	clients, err := demo.Dial(ctx, consulAPI, tel, demo.WithCertificates(src))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(clients.Close)
	srv := httptest.NewServer(tel.MetricsHandler())
	t.Cleanup(srv.Close)
	return &mtlsDriver{clients: clients, src: src, metrics: func(t *testing.T, ctx context.Context) devstack.Metrics {
		t.Helper()
		got, err := scrape(ctx, srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return got
	}}
}

// callErrors keeps the first errors of a load's calls, with when each
// call started, for the failure message.
type callErrors struct {
	mu   sync.Mutex
	errs []callError
}

type callError struct {
	at  time.Time
	err error
}

// keep wraps call so that its first 20 errors are kept.
func (ce *callErrors) keep(call func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		start := time.Now()
		err := call(ctx)
		if err != nil {
			ce.mu.Lock()
			if len(ce.errs) < 20 {
				ce.errs = append(ce.errs, callError{at: start, err: err})
			}
			ce.mu.Unlock()
		}
		return err
	}
}

func (ce *callErrors) list() []callError {
	ce.mu.Lock()
	defer ce.mu.Unlock()
	return slices.Clone(ce.errs)
}

// newUser creates a user and returns its id.
func (d *mtlsDriver) newUser(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	reply, err := d.clients.User.CreateUser(ctx, &userv1.CreateUserRequest{Name: name, Email: strings.ReplaceAll(strings.ToLower(name), " ", ".") + "@example.com"})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return reply.GetUser().GetId()
}

// watched is one instance as the certificate watch sees it.
type watched struct {
	name    string
	proc    *devstack.ServiceProc
	added   bool      // started after the rotation: its first roots are the new ones
	started time.Time // when added
	expiry  int64     // the current leaf's expiry, from its gauge
	// rotations are its rampart_mtls_rotations_total, by kind.
	leafRotations, rootRotations float64
	// newAtStart: an added instance whose first leaf was already one
	// issued after the rotation.
	newAtStart bool
	rootsAt    time.Time // when it first showed new roots
	leafAt     time.Time // when it first showed a leaf issued after the rotation
}

// certWatch follows every instance's certificate metrics.
type certWatch struct {
	instances []*watched
	rotated   time.Time
	oldMax    int64 // the latest expiry of a leaf issued before the rotation
	// driver is the demo clients' certificate source, read directly.
	driver       *consul.CertSource
	driverLeafAt time.Time
}

func newCertWatch(t *testing.T, ctx context.Context, s *devstack.Stack, driver *consul.CertSource) *certWatch {
	t.Helper()
	cw := &certWatch{driver: driver}
	for _, name := range []string{"user", "order"} {
		for i, p := range s.Instances(name) {
			cw.instances = append(cw.instances, &watched{name: fmt.Sprintf("%s %d", name, i+1), proc: p})
		}
	}
	cw.poll(t, ctx)
	for _, w := range cw.instances {
		if w.expiry == 0 {
			t.Fatalf("%s exports no %s", w.name, server.MetricLeafExpiry)
		}
	}
	return cw
}

// latestExpiry is the latest leaf expiry the instances show.
func (cw *certWatch) latestExpiry() int64 {
	var latest int64
	for _, w := range cw.instances {
		latest = max(latest, w.expiry)
	}
	return latest
}

// poll reads every instance's certificate metrics once and records what
// changed since the rotation.
func (cw *certWatch) poll(t *testing.T, ctx context.Context) {
	t.Helper()
	for _, w := range cw.instances {
		got, err := scrape(ctx, w.proc.HTTPAddr)
		if err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		w.expiry = int64(sum(got, server.MetricLeafExpiry, ""))
		w.leafRotations = sum(got, server.MetricRotations, `kind="leaf"`)
		w.rootRotations = sum(got, server.MetricRotations, `kind="roots"`)
		if cw.rotated.IsZero() {
			continue
		}
		now := time.Now()
		if w.rootsAt.IsZero() && !w.added && w.rootRotations >= 1 {
			w.rootsAt = now
		}
		if w.leafAt.IsZero() && w.expiry > cw.oldMax {
			w.leafAt = now
		}
	}
	if !cw.rotated.IsZero() && cw.driverLeafAt.IsZero() && cw.driver.Expiry().Unix() > cw.oldMax {
		cw.driverLeafAt = time.Now()
	}
}

// until polls every 100 ms until done holds or deadline passes.
func (cw *certWatch) until(t *testing.T, ctx context.Context, deadline time.Time, done func() bool) bool {
	t.Helper()
	for {
		cw.poll(t, ctx)
		if done() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

func (cw *certWatch) all(ok func(*watched) bool) bool { return cw.count(ok) == len(cw.instances) }

func (cw *certWatch) count(ok func(*watched) bool) int {
	n := 0
	for _, w := range cw.instances {
		if ok(w) {
			n++
		}
	}
	return n
}

// add starts one more instance of name, waits until Consul shows want
// passing, and watches it.
func (cw *certWatch) add(t *testing.T, ctx context.Context, s *devstack.Stack, name string, want int) *watched {
	t.Helper()
	w := &watched{name: fmt.Sprintf("%s %d (added)", name, want), added: true, started: time.Now()}
	p, err := s.Add(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	w.proc = p
	if _, err := devstack.WaitPassing(ctx, devstacktest.StackConsul(t, s), name, want); err != nil {
		t.Fatal(err)
	}
	cw.instances = append(cw.instances, w)
	cw.poll(t, ctx)
	w.newAtStart = !w.leafAt.IsZero()
	return w
}

// calls reads a count of an instance's calls from its /metrics.
type calls func(devstack.Metrics) float64

func serverCalls(method string) calls {
	return func(m devstack.Metrics) float64 {
		return sum(m, "rpc_server_call_duration_seconds_count", `rpc_method="`+strings.TrimPrefix(method, "/")+`"`)
	}
}

func clientCalls(method string) calls {
	return func(m devstack.Metrics) float64 {
		return sum(m, "rpc_client_call_duration_seconds_count", `rpc_method="`+strings.TrimPrefix(method, "/")+`"`)
	}
}

// firstCalls waits until w's count rises above 0 and returns how long after
// w's start that was seen, and whether an old leaf was still in use then:
// w's own, or every other instance's of the other service. The count is
// read before the certificates, so a leaf still old at that read was old
// at the handshake of every call counted.
func (cw *certWatch) firstCalls(t *testing.T, ctx context.Context, w *watched, limit time.Duration, count calls) (mixed bool, after time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got, err := scrape(ctx, w.proc.HTTPAddr)
		if err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		seen := time.Now()
		if count(got) > 0 {
			cw.poll(t, ctx)
			peerName := "order"
			if strings.HasPrefix(w.name, "order") {
				peerName = "user"
			}
			peersOld := true
			for _, p := range cw.instances {
				if strings.HasPrefix(p.name, peerName) && !p.leafAt.IsZero() {
					peersOld = false
				}
			}
			return w.leafAt.IsZero() || peersOld, seen.Sub(w.started)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no call counted within %s of its start", w.name, limit)
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

// summary lists, per instance, the time from CASetConfig to its new roots
// and its new leaf.
func (cw *certWatch) summary() string {
	parts := make([]string, 0, len(cw.instances))
	for _, w := range cw.instances {
		roots := "—"
		if !w.rootsAt.IsZero() {
			roots = Dur(w.rootsAt.Sub(cw.rotated))
		} else if w.added {
			roots = "new from its start"
		}
		leaf := "not yet"
		switch {
		case w.newAtStart:
			leaf = "new from its start"
		case !w.leafAt.IsZero():
			leaf = Dur(w.leafAt.Sub(cw.rotated))
		}
		parts = append(parts, fmt.Sprintf("%s roots %s, leaf %s (rotations: leaf %.0f, roots %.0f)",
			w.name, roots, leaf, w.leafRotations, w.rootRotations))
	}
	return strings.Join(parts, "; ")
}

// table is summary for a failure message, with each expiry.
func (cw *certWatch) table() string {
	var b strings.Builder
	for _, w := range cw.instances {
		fmt.Fprintf(&b, "  %s: expiry %s (old leaves end by %s), rootsAt %v, leafAt %v\n", w.name,
			time.Unix(w.expiry, 0).UTC().Format(time.RFC3339), time.Unix(cw.oldMax, 0).UTC().Format(time.RFC3339), w.rootsAt, w.leafAt)
	}
	return b.String()
}

// attempts sums the client attempts of every instance by method and code.
func (cw *certWatch) attempts(t *testing.T, ctx context.Context) string {
	t.Helper()
	byKey := map[string]float64{}
	for _, w := range cw.instances {
		got, err := scrape(ctx, w.proc.HTTPAddr)
		if err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		for series, v := range got {
			name, labels, _ := strings.Cut(series, "{")
			if name != "rpc_client_call_duration_seconds_count" {
				continue
			}
			byKey[devstack.LabelValue(labels, "rpc_method")+" "+devstack.LabelValue(labels, "rpc_response_status_code")] += v
		}
	}
	parts := make([]string, 0, len(byKey))
	for k, v := range byKey {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, v))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}
