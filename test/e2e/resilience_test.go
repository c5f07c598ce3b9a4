package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/middleware/faults"
)

const getUser = "/user.v1.UserService/GetUser"

// budgetFloor is what the default retry budget allows on top of the ratio
// over its 10 s window: budget.min_per_second (10) x 10 s.
const budgetFloor = 100

// orderAt is a plain client of one order instance p of s: no retry of its
// own, so every failure the test sees is one order's client chain did not
// mask. In mtls it presents the certificate of devstack.ClientIdentity.
func orderAt(t *testing.T, s *devstack.Stack, p *devstack.ServiceProc) orderv1.OrderServiceClient {
	t.Helper()
	return orderv1.NewOrderServiceClient(devstacktest.DialAddr(t, devstacktest.Certificates(t, s), p.GRPCAddr, "order"))
}

// newBuyer creates a user to place orders for.
func newBuyer(t *testing.T, ctx context.Context, s *devstack.Stack) string {
	t.Helper()
	clients := dialDemo(t, ctx, s)
	reply, err := clients.User.CreateUser(ctx, &userv1.CreateUserRequest{Name: "Buyer", Email: "buyer@example.com"})
	if err != nil {
		t.Fatalf("create buyer: %v", err)
	}
	return reply.GetUser().GetId()
}

// placeOrder returns a call that places one order with its own key.
func placeOrder(client orderv1.OrderServiceClient, buyer string, timeout time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := client.CreateOrder(ctx, &orderv1.CreateOrderRequest{
			IdempotencyKey: uuid.NewString(), UserId: buyer, Item: "pen", Quantity: 1,
		})
		return err
	}
}

// setFaults sets the same faults on every given instance.
func setFaults(t *testing.T, ctx context.Context, procs []*devstack.ServiceProc, fs map[string]faults.Fault) {
	t.Helper()
	for _, p := range procs {
		if err := devstacktest.SetFaults(ctx, p, fs); err != nil {
			t.Fatal(err)
		}
	}
}

// serverAttempts sums, over the instances, the calls of method that reached
// their fault injector: the server-side attempts.
func serverAttempts(t *testing.T, ctx context.Context, procs []*devstack.ServiceProc, method string) int64 {
	t.Helper()
	var n int64
	for _, p := range procs {
		st, err := devstacktest.Faults(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		n += st.Seen[method]
	}
	return n
}

// busiest returns the instance that has served the most calls of method:
// the one the balancer favours at the moment.
func busiest(t *testing.T, ctx context.Context, procs []*devstack.ServiceProc, method string) *devstack.ServiceProc {
	t.Helper()
	var top *devstack.ServiceProc
	most := int64(-1)
	for _, p := range procs {
		st, err := devstacktest.Faults(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Seen[method] > most {
			top, most = p, st.Seen[method]
		}
	}
	return top
}

// configWith writes a copy of configs/<service>.yaml with the value at path
// replaced, and returns its path.
func configWith(t *testing.T, service string, path []string, value any) string {
	t.Helper()
	file, err := devstack.WriteConfig(repoRoot(t), service, t.TempDir(), devstack.Override{Path: path, Value: value})
	if err != nil {
		t.Fatal(err)
	}
	return file
}

// TestRetryMasksAFlakyInstance: one of two user instances fails 30% of
// GetUser calls; every one of 1,000 orders still succeeds, because order's
// client retries on the other instance.
func TestRetryMasksAFlakyInstance(t *testing.T) {
	const orders = 1000
	ctx := devstacktest.Context(t, 90*time.Second)
	s := startStack(t, ctx, 2, 1)
	buyer := newBuyer(t, ctx, s)
	users := s.Instances("user")
	before := serverAttempts(t, ctx, users, getUser)
	setFaults(t, ctx, users[:1], map[string]faults.Fault{getUser: {Abort: &faults.Abort{Percent: 30, Code: "UNAVAILABLE"}}})

	client := orderAt(t, s, s.Instances("order")[0])
	res := runCalls(ctx, orders, 8, func(ctx context.Context, _ int) error { return placeOrder(client, buyer, 5*time.Second)(ctx) })

	attempts := serverAttempts(t, ctx, users, getUser) - before
	st, err := devstacktest.Faults(ctx, users[0])
	if err != nil {
		t.Fatal(err)
	}
	injected := st.Injected[getUser].Abort
	t.Logf("%d orders: %d failed; user saw %d GetUser attempts (%.3f per order), %d of them aborted by the fault",
		orders, len(res.failed()), attempts, float64(attempts)/orders, injected)
	if f := res.failed(); len(f) > 0 {
		t.Fatalf("%d of %d orders failed (by code %v), first: %v", len(f), orders, f.byCode(), f[0].err)
	}
	if injected == 0 {
		t.Fatal("the fault never fired: the test proved nothing")
	}
	if attempts != orders+injected {
		t.Fatalf("attempts %d != orders %d + injected failures %d: a failed attempt was not retried exactly once", attempts, orders, injected)
	}
}

// TestOutageIsBoundedByBudgetAndBreaker: every user instance fails every
// GetUser for 10 s under steady load. The dependency sees at most 1.2x the
// requests plus the budget floor, order's breaker starts refusing locally,
// and success returns within 5 s of the end of the outage.
func TestOutageIsBoundedByBudgetAndBreaker(t *testing.T) {
	const (
		rate    = 50
		outage  = 10 * time.Second
		recover = 5 * time.Second
	)
	ctx := devstacktest.Context(t, 90*time.Second)
	s := startStack(t, ctx, 2, 1)
	buyer := newBuyer(t, ctx, s)
	users := s.Instances("user")
	client := orderAt(t, s, s.Instances("order")[0])

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	before := serverAttempts(t, ctx, users, getUser)
	setFaults(t, ctx, users, map[string]faults.Fault{getUser: {Abort: &faults.Abort{Percent: 100, Code: "UNAVAILABLE"}}})
	load := startSteadyLoad(loadCtx, rate, placeOrder(client, buyer, 2*time.Second))
	sleepCtx(ctx, outage/2)
	midway := time.Now()
	attemptsMidway := serverAttempts(t, ctx, users, getUser)
	sleepCtx(ctx, outage/2)
	stopLoad()
	during := load.wait()
	attemptsEnd := serverAttempts(t, ctx, users, getUser)
	attempts := attemptsEnd - before
	setFaults(t, ctx, users, nil)
	outageEnd := time.Now()

	t.Logf("outage: %d orders sent, %d failed (by code %v); user saw %d GetUser attempts (%.2f per order)",
		len(during), len(during.failed()), during.byCode(), attempts, float64(attempts)/float64(len(during)))
	if limit := int64(1.2*float64(len(during))) + budgetFloor; attempts > limit {
		t.Errorf("user saw %d attempts for %d orders, more than 1.2x + %d = %d: the budget did not hold", attempts, len(during), budgetFloor, limit)
	}
	// The breaker answers locally: in the second half of the outage the
	// dependency sees fewer attempts than there are orders.
	late := during.between(midway, outageEnd)
	lateAttempts := attemptsEnd - attemptsMidway
	t.Logf("second half of the outage: %d orders, %d attempts reached user", len(late), lateAttempts)
	if lateAttempts >= int64(len(late)) {
		t.Errorf("second half of the outage: %d attempts for %d orders; the breaker did not refuse locally", lateAttempts, len(late))
	}
	metrics := scrape(t, ctx, s.Instances("order")[0].HTTPAddr)
	rejected := metrics.Sum("rampart_breaker_rejections_total", `method="/user.v1.UserService/GetUser"`)
	t.Logf("order's breaker rejected %v calls locally; retry budget refused %v retries",
		rejected, metrics.Sum("rampart_retry_budget_exhausted_total", `target="user"`))
	if rejected == 0 {
		t.Error("rampart_breaker_rejections_total is 0: the breaker never opened")
	}

	// Recovery: the breaker's window (3 s) still remembers the outage, so
	// success returns gradually; recovered means 20 orders in a row succeed.
	const streak = 20
	run, recovered := 0, time.Duration(0)
	for deadline := outageEnd.Add(recover); run < streak && time.Now().Before(deadline); {
		if err := placeOrder(client, buyer, time.Second)(ctx); err != nil {
			run = 0
			sleepCtx(ctx, time.Second/rate)
			continue
		}
		if run++; run == streak {
			recovered = time.Since(outageEnd)
		}
	}
	if recovered == 0 {
		t.Fatalf("orders did not succeed %d in a row within %s of the end of the outage", streak, recover)
	}
	t.Logf("%d orders in a row succeeded %s after the faults were removed", streak, recovered.Round(time.Millisecond))
}

// TestDeadlinePropagates: with GetUser delayed 2 s and order's GetUser
// timeout at 300 ms, CreateOrder fails with DeadlineExceeded in about
// 300 ms, and the user handler's context is cancelled, not left to run.
func TestDeadlinePropagates(t *testing.T) {
	const (
		methodTimeout = 300 * time.Millisecond
		quietMargin   = 50 * time.Millisecond // enough on a machine left to the test
	)
	ctx := devstacktest.Context(t, 60*time.Second)
	orderConf := configWith(t, "order", []string{"clients", "user", "methods", getUser},
		map[string]any{"timeout": methodTimeout.String(), "attempt_timeout": methodTimeout.String()})
	s := startStackWith(t, ctx, 2, 1, stackExtras{configs: map[string]string{"order": orderConf}})
	buyer := newBuyer(t, ctx, s)
	users := s.Instances("user")
	client := orderAt(t, s, s.Instances("order")[0])
	healthy := healthyLatency(t, ctx, client, buyer, 5, 1)
	setFaults(t, ctx, users, map[string]faults.Fault{getUser: {Delay: &faults.Delay{Percent: 100, Duration: 2 * time.Second}}})

	res := runCalls(ctx, 5, 1, func(ctx context.Context, _ int) error { return placeOrder(client, buyer, 5*time.Second)(ctx) })
	limit := methodTimeout + callMargin(healthy, quietMargin)
	for i, c := range res {
		if status.Code(c.err) != codes.DeadlineExceeded {
			t.Fatalf("order %d: %v, want DeadlineExceeded", i, c.err)
		}
		t.Logf("order %d: DeadlineExceeded after %s", i, c.latency.Round(time.Millisecond))
		if c.latency > limit {
			t.Errorf("order %d took %s, want <= %s (the %s timeout + the larger of %s and 2 x the slowest healthy order, %s)",
				i, c.latency, limit, methodTimeout, quietMargin, healthy)
		}
	}
	// The server notices the deadline at about the moment the client gives
	// up, so the last call's interruption may be counted just after the
	// client returned: poll briefly, then require the exact count.
	interrupted := func() int64 {
		var n int64
		for _, p := range users {
			st, err := devstacktest.Faults(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			n += st.Injected[getUser].Interrupted
		}
		return n
	}
	got := interrupted()
	for deadline := time.Now().Add(2 * time.Second); got < int64(len(res)) && time.Now().Before(deadline); got = interrupted() {
		sleepCtx(ctx, 20*time.Millisecond)
	}
	if got != int64(len(res)) {
		t.Fatalf("user saw %d delayed GetUser calls cancelled by their deadline, want %d (one per order, no retry past the deadline)", got, len(res))
	}
}

// TestCreateOrderIsAppliedOnce: two order instances share one database,
// SQLite's file or PostgreSQL's. Instance A stores each order and then
// fails the call (the reply is lost); the client's retry reaches instance
// B, which finds the key A stored and answers A's order. Every key has
// exactly one order, and a key reused with another body is refused on the
// instance that did not store it.
func TestCreateOrderIsAppliedOnce(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) { testAppliedOnce(t, driver) })
	}
}

func testAppliedOnce(t *testing.T, driver string) {
	const (
		keys        = 30
		createOrder = "/order.v1.OrderService/CreateOrder"
	)
	ctx := devstacktest.Context(t, 90*time.Second)
	var extras stackExtras
	var dsn string
	if driver == "postgres" {
		dsn = devstacktest.Postgres(t)
		extras.env = []string{"RAMPART_DATA_DRIVER=postgres", "DATABASE_URL=" + dsn}
	}
	s := startStackWith(t, ctx, 1, 2, extras)
	buyer := newBuyer(t, ctx, s)
	orders := s.Instances("order")
	setFaults(t, ctx, orders[:1], map[string]faults.Fault{createOrder: {Abort: &faults.Abort{Percent: 100, Code: "UNAVAILABLE", After: true}}})

	// One key by hand: applied on A, its reply lost; the retry on B
	// answers the order A stored.
	first := &orderv1.CreateOrderRequest{IdempotencyKey: "first", UserId: buyer, Item: "pen", Quantity: 1}
	if _, err := orderAt(t, s, orders[0]).CreateOrder(ctx, first); status.Code(err) != codes.Unavailable {
		t.Fatalf("CreateOrder on A: %v, want the injected Unavailable after the order was stored", err)
	}
	retried, err := orderAt(t, s, orders[1]).CreateOrder(ctx, first)
	if err != nil {
		t.Fatalf("CreateOrder retried on B: %v", err)
	}
	firstID := retried.GetOrder().GetId()

	client := orderv1.NewOrderServiceClient(rampartConn(t, s, "order", "{target: discovery:///order, retry: {max_attempts: 5}}"))
	ids := make([]string, keys)
	res := runCalls(ctx, keys, 4, func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		reply, cerr := client.CreateOrder(ctx, &orderv1.CreateOrderRequest{
			IdempotencyKey: fmt.Sprintf("key-%d", i), UserId: buyer, Item: "pen", Quantity: 1,
		})
		ids[i] = reply.GetOrder().GetId()
		return cerr
	})
	st, err := devstacktest.Faults(ctx, orders[0])
	if err != nil {
		t.Fatal(err)
	}
	// The key "first" made two of the attempts and lost one reply.
	lost := st.Injected[createOrder].Abort - 1
	attempts := serverAttempts(t, ctx, orders, createOrder) - 2
	t.Logf("%s: %d keys: %d calls failed, %d attempts, %d replies lost after the order was stored", driver, keys, len(res.failed()), attempts, lost)
	// The key "first" is the case proved every run; how many replies of the
	// load A loses depends on the balancer, which moves calls off A as it
	// fails (on PostgreSQL, 1 to 2 of 30 seen).
	if lost == 0 {
		t.Log("no reply of the load was lost: only the key \"first\" crossed instances this run")
	}

	// The same key with another body, on the instance that did not store it.
	reused := &orderv1.CreateOrderRequest{IdempotencyKey: "first", UserId: buyer, Item: "pen", Quantity: 2}
	_, err = orderAt(t, s, orders[1]).CreateOrder(ctx, reused)
	checkError(t, err, codes.AlreadyExists, orderv1.ErrorReason_IDEMPOTENCY_KEY_REUSED.String())

	list, err := orderAt(t, s, orders[1]).ListOrders(ctx, &orderv1.ListOrdersRequest{UserId: buyer})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetOrders()) != keys+1 {
		t.Fatalf("%d orders stored for %d keys: a retry created a second order or lost one", len(list.GetOrders()), keys+1)
	}
	stored := map[string]bool{}
	for _, o := range list.GetOrders() {
		stored[o.GetId()] = true
	}
	if !stored[firstID] {
		t.Fatalf("the retry on B answered order %s, which is not the one A stored", firstID)
	}
	for i, c := range res {
		if c.err == nil && !stored[ids[i]] {
			t.Fatalf("key-%d answered order %s, which is not the stored one", i, ids[i])
		}
	}
	if len(res.failed()) == keys {
		t.Fatal("no call succeeded: the retry never reached the healthy instance")
	}
	if dsn != "" {
		answered := map[string]string{"first": firstID}
		for i, c := range res {
			if c.err == nil {
				answered[fmt.Sprintf("key-%d", i)] = ids[i]
			}
		}
		checkPostgresOrders(t, ctx, dsn, buyer, answered)
	}
}

// checkPostgresOrders reads the order database itself: each key given
// points at exactly the order id given, and every order of buyer has its
// own key row (an order without one would be a second order of a retried
// key).
func checkPostgresOrders(t *testing.T, ctx context.Context, dsn, buyer string, want map[string]string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	for key, id := range want {
		var got string
		var n int
		row := conn.QueryRow(ctx, `SELECT min(o.id), count(*) FROM idempotency_keys k JOIN orders o ON o.id = k.order_id WHERE k.key = $1`, key)
		if err = row.Scan(&got, &n); err != nil {
			t.Fatalf("key %s in the database: %v", key, err)
		}
		if n != 1 || got != id {
			t.Fatalf("key %s: %d orders in the database (%s), want exactly the one answered, %s", key, n, got, id)
		}
	}
	var orders, keyed int
	err = conn.QueryRow(ctx, `SELECT count(*), count(k.key) FROM orders o LEFT JOIN idempotency_keys k ON k.order_id = o.id WHERE o.user_id = $1`, buyer).
		Scan(&orders, &keyed)
	if err != nil {
		t.Fatal(err)
	}
	if orders != keyed {
		t.Fatalf("%d orders of the buyer in the database, %d of them with a key: a retry created a second order", orders, keyed)
	}
}

// rampartConn dials discovery:///<name> the way the services dial their
// peers: Consul discovery and the full client chain, configured by the
// clients.<name> YAML given.
func rampartConn(t *testing.T, s *devstack.Stack, name, clientYAML string) *grpc.ClientConn {
	t.Helper()
	c, err := conf.Parse([]byte("service: {name: e2e}\nclients: {"+name+": "+clientYAML+"}"),
		func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return devstacktest.Dial(t, s, c, name)
}

// TestHungInstanceCostsOneAttempt: one of two user instances hangs on
// GetUser. Every order still succeeds within one attempt timeout, one
// backoff and a normal second attempt.
func TestHungInstanceCostsOneAttempt(t *testing.T) {
	const (
		attemptTimeout = 500 * time.Millisecond // clients.user.attempt_timeout in configs/order.yaml
		firstBackoff   = 50 * time.Millisecond  // clients.user.retry.initial_backoff
		normalCall     = 150 * time.Millisecond // a generous bound on one healthy attempt under -race, on a quiet machine
		workers        = 4
	)
	ctx := devstacktest.Context(t, 60*time.Second)
	s := startStack(t, ctx, 2, 1)
	buyer := newBuyer(t, ctx, s)
	users := s.Instances("user")
	client := orderAt(t, s, s.Instances("order")[0])
	healthy := healthyLatency(t, ctx, client, buyer, 20, workers)
	// Hang the instance the balancer favours now. P2C may still keep away
	// from it for a while (it forces a pick of a node left unpicked only
	// after 3 s), so the orders come in rounds until one reached it; CI saw
	// 40 orders that never did.
	hung := busiest(t, ctx, users, getUser)
	setFaults(t, ctx, []*devstack.ServiceProc{hung}, map[string]faults.Fault{getUser: {Delay: &faults.Delay{Percent: 100, Duration: 30 * time.Second}}})

	var res calls
	st := &faults.State{}
	for round := 1; round <= 6 && st.Injected[getUser].Delay == 0; round++ {
		res = append(res, runCalls(ctx, 40, workers, func(ctx context.Context, _ int) error { return placeOrder(client, buyer, 5*time.Second)(ctx) })...)
		var err error
		if st, err = devstacktest.Faults(ctx, hung); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d orders: %d failed, slowest %s; the hung instance held %d GetUser calls",
		len(res), len(res.failed()), res.maxLatency().Round(time.Millisecond), st.Injected[getUser].Delay)
	if f := res.failed(); len(f) > 0 {
		t.Fatalf("%d orders failed, first: %v", len(f), f[0].err)
	}
	if st.Injected[getUser].Delay == 0 {
		t.Fatal("no call reached the hung instance: the test proved nothing")
	}
	if limit := attemptTimeout + firstBackoff + callMargin(healthy, normalCall); res.maxLatency() > limit {
		t.Fatalf("slowest order took %s, want <= %s (attempt timeout %s + backoff %s + the larger of %s and 2 x the slowest healthy order, %s)",
			res.maxLatency(), limit, attemptTimeout, firstBackoff, normalCall, healthy)
	}
}

// healthyLatency places n orders, workers at a time, after one that opens
// the connections, and returns the slowest: what a normal call costs on
// this machine at this moment, -race and whatever runs beside the test
// included.
func healthyLatency(t *testing.T, ctx context.Context, client orderv1.OrderServiceClient, buyer string, n, workers int) time.Duration {
	t.Helper()
	if err := placeOrder(client, buyer, 5*time.Second)(ctx); err != nil {
		t.Fatalf("healthy order: %v", err)
	}
	res := runCalls(ctx, n, workers, func(ctx context.Context, _ int) error { return placeOrder(client, buyer, 5*time.Second)(ctx) })
	if f := res.failed(); len(f) > 0 {
		t.Fatalf("%d of %d healthy orders failed, first: %v", len(f), n, f[0].err)
	}
	t.Logf("%d healthy orders, %d at a time: slowest %s", n, workers, res.maxLatency().Round(time.Millisecond))
	return res.maxLatency()
}

// callMargin is what a bound of the form "timeout + margin" allows for the
// call's own work: quiet, the figure for a machine left to the test, or,
// when the machine is slower now (loaded, -race), twice the slowest healthy
// call measured in the same test. A call cut at a timeout pays its trip to
// and from order, which a healthy call pays too.
func callMargin(healthy, quiet time.Duration) time.Duration { return max(quiet, 2*healthy) }

// TestClientErrorsAreNotRetried: NotFound and InvalidArgument reach the
// server exactly once per call.
func TestClientErrorsAreNotRetried(t *testing.T) {
	const n = 10
	ctx := devstacktest.Context(t, 60*time.Second)
	s := startStack(t, ctx, 2, 1)
	users := s.Instances("user")
	client := orderAt(t, s, s.Instances("order")[0])

	before := serverAttempts(t, ctx, users, getUser)
	for range n {
		err := placeOrder(client, uuid.NewString(), 2*time.Second)(ctx)
		if status.Code(err) != codes.NotFound {
			t.Fatalf("order for an unknown buyer: %v, want NotFound", err)
		}
	}
	if got := serverAttempts(t, ctx, users, getUser) - before; got != n {
		t.Fatalf("user saw %d GetUser attempts for %d NotFound calls, want exactly %d", got, n, n)
	}

	// Invalid arguments are refused by validation, before the fault
	// injector counts them; the server's request log counts them instead.
	userClient := userv1.NewUserServiceClient(rampartConn(t, s, "user", "{target: discovery:///user}"))
	const bad = "not-a-uuid-e2e"
	for range n {
		_, err := userClient.GetUser(ctx, &userv1.GetUserRequest{Id: bad})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("GetUser(%q): %v, want InvalidArgument", bad, err)
		}
	}
	logged := 0
	for _, p := range users {
		logged += countInLog(t, p.LogPath, getUser, "InvalidArgument", "error=id: does not match regex pattern")
	}
	if logged != n {
		t.Fatalf("user logged %d requests for %d InvalidArgument calls, want exactly %d", logged, n, n)
	}
}
