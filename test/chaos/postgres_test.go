package chaos_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/test/chaos"
)

// postgresEnv runs every instance on the PostgreSQL database at dsn.
func postgresEnv(dsn string) []string {
	return []string{"RAMPART_DATA_DRIVER=postgres", "DATABASE_URL=" + dsn}
}

// TestPostgresRestart is scenario 9: user and order (two instances each)
// share one PostgreSQL database, which is stopped in fast mode under
// CreateOrder load and started again on the same data. While it is down,
// calls fail fast (p99 within a tenth of the driver's deadline, or twice
// the healthy p99 in the short run) with Unavailable, which a caller may
// retry; once it accepts connections again, success resumes within 5 s
// without restarting anything (the pools redial by themselves). Every
// acknowledged order is stored exactly once, and the failed calls, sent
// again with their keys after recovery, leave one order per key.
func TestPostgresRestart(t *testing.T) {
	const (
		maxRecovery = 5 * time.Second
		recovered   = time.Second // a run of successes this long means recovered
		failFast    = callTimeout / 10
	)
	sc := newScenario(t, 9, "9. PostgreSQL restart: the database is stopped (fast shutdown) under CreateOrder load, then started again")
	m := current()
	ctx := devstacktest.Context(t, 3*time.Minute)
	pg := devstacktest.OwnPostgres(t)
	dsn := devstacktest.PostgresDatabase(t, pg.DSN("postgres"))
	s := startStack(t, ctx, stackOpts{users: 2, orders: 2, env: postgresEnv(dsn)})
	buyer := newBuyer(t, ctx, s)
	var rejects []*sampler
	for _, p := range s.Instances("order") {
		rejects = append(rejects, startSampler(ctx, p, "rampart_breaker_rejections_total", `method="`+getUser+`"`, 50*time.Millisecond))
	}
	ol := startOrderLoad(t, ctx, s, buyer, m.rate, 2*time.Minute)
	sleepCtx(ctx, m.warmup)

	downAt := time.Now()
	if err := pg.Halt(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Since(downAt)
	sleepCtx(ctx, m.dbDown-stopped)
	restartAt := time.Now()
	if err := pg.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	upAt := time.Now()
	sc.fault(downAt, upAt, "PostgreSQL down")
	sleepCtx(ctx, maxRecovery+m.after)
	ol.run.Stop()
	calls, attempts := ol.wait(ctx)
	acked := ol.orders.AckedIDs()

	streak, ok := calls.StreakFrom(upAt, recovered)
	recoverTook := "not within the run"
	if ok {
		recoverTook = Dur(streak.Sub(upAt))
	}
	// The outage, as the calls saw it: from the shutdown until the run of
	// successes that marks recovery (the end of the load if none came).
	outageEnd := time.Now()
	if ok {
		outageEnd = streak
	}
	failed := calls.Between(downAt, outageEnd).Failed()
	// Failures outside the outage: order's breaker, opened by the outage,
	// may still reject a call now and then for its window (3 s) after the
	// run of successes (Unavailable), and a shared machine's CPU can make
	// order or user shed calls (ResourceExhausted). Both are retryable.
	otherFailed := calls.Failed().Where(func(c chaos.Call) bool { return c.Start.Before(downAt) || !c.Start.Before(outageEnd) })
	healthy := healthyAround(calls, downAt, streak)
	sc.row(chaos.Row{Client: "Rampart, via order (CreateOrder → GetUser, both on PostgreSQL)", Calls: calls, Attempts: attempts, Recover: recoverTook})
	sc.part(chaos.Row{Client: "… of which failed during the outage", Calls: failed})
	sc.note("PostgreSQL down %s: fast shutdown took %s, start again (same cluster and port) until it accepted connections %s.",
		Dur(upAt.Sub(downAt)), Dur(stopped), Dur(upAt.Sub(restartAt)))
	sc.noteHealthy("healthy, before the outage and from recovery on", healthy)
	sc.note("failed during the outage: %d calls (%s), p50 %s, p99 %s, max %s; the driver's deadline is %s.",
		len(failed), failed.ByCode(), Dur(failed.Quantile(0.5)), Dur(failed.Quantile(0.99)), Dur(failed.Max()), Dur(callTimeout))
	if last, found := failed.LastWhere(func(chaos.Call) bool { return true }); found {
		sc.note("the last of them started %s after the database accepted connections again.", Dur(last.Sub(upAt)))
	}
	if len(otherFailed) > 0 {
		sc.note("failed outside the outage: %d calls (%s).", len(otherFailed), otherFailed.ByCode())
	}
	sc.note("time to recover: from PostgreSQL accepting connections again until the first call of a run of %s of successes.", Dur(recovered))
	var rejected, rejectedAfter float64
	for _, smp := range rejects {
		samples := smp.finish()
		if len(samples) > 0 {
			rejected += samples[len(samples)-1].value
			rejectedAfter += samples[len(samples)-1].value - valueAt(samples, upAt)
		}
	}
	sc.note("user answered GetUser Unavailable too (its store is the same database), so order's breaker for GetUser opened: it rejected %.0f calls itself, %.0f of them after the database was back.", rejected, rejectedAfter)

	for _, c := range failed {
		if c.Code != codes.Unavailable {
			t.Errorf("a call failed with %s during the outage, want Unavailable (retryable): %s", c.Code, failed.ByCode())
			break
		}
	}
	for _, c := range otherFailed {
		if c.Code != codes.Unavailable && c.Code != codes.ResourceExhausted {
			t.Errorf("a call failed with %s outside the outage, want a retryable code (Unavailable, ResourceExhausted): %s", c.Code, otherFailed.ByCode())
			break
		}
	}
	if len(failed) == 0 {
		t.Error("no call failed: the outage was not seen, the test proved nothing")
	}
	if limit, why := m.limit(0, failFast, healthy); failed.Quantile(0.99) >= limit {
		t.Errorf("failed calls: p99 %s, want < %s (%s): calls hang on the database instead of failing fast", failed.Quantile(0.99), limit, why)
	}
	if !ok || streak.Sub(upAt) > maxRecovery {
		t.Errorf("success did not resume within %s of the database's return (%s): the pool does not reconnect by itself", maxRecovery, recoverTook)
	}

	// A client retrying after the outage sends each failed call again with
	// its key: an order the failed call stored comes back, else it is
	// created now. Either way each key ends with one order.
	before := storedOrders(t, ctx, dsn, buyer)
	client := orderv1.NewOrderServiceClient(dial(t, s, s.Instances("order")[1]))
	resent, resentFailed := 0, 0
	// Every failed call, outside the outage too, is sent again.
	for _, key := range ol.orders.FailedKeys() {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		reply, err := client.CreateOrder(cctx, ol.orders.Request(key))
		cancel()
		resent++
		if err != nil {
			resentFailed++
			continue
		}
		acked = append(acked, reply.GetOrder().GetId())
	}
	if resentFailed > 0 {
		t.Errorf("%d of %d failed calls sent again after recovery failed", resentFailed, resent)
	}
	st := storedOrders(t, ctx, dsn, buyer)
	sc.note("of the %d failed calls, %d had stored their order before failing (sent again, such a call answers that order, not a second one).",
		resent, before.Orders-(len(acked)-resent+resentFailed))
	missing, _, breaches := st.Verify(acked)
	sc.note("orders acknowledged during the run: %d, plus %d failed calls sent again after recovery with their keys; orders in the database: %d, every one with its own key: %t; acknowledged but not stored: %d.",
		len(acked)-resent+resentFailed, resent, st.Orders, st.Keyed == st.Orders, missing)
	for _, b := range breaches {
		t.Error(b)
	}
}

// storedOrders is chaos.StoredOrders, failing the test on error.
func storedOrders(t *testing.T, ctx context.Context, dsn, buyer string) chaos.Stored {
	t.Helper()
	st, err := chaos.StoredOrders(ctx, dsn, buyer)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
