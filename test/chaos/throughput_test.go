package chaos_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/test/chaos"
)

var throughput = flag.Bool("chaos.throughput", false, "run TestCreateOrderThroughput: CreateOrder throughput and p99 on SQLite and on PostgreSQL (docs/performance.md)")

// Closed-loop CreateOrder load: inFlight callers, each sending its next
// call when the last returned, for throughputCalls calls after
// throughputWarmup that are not counted.
const (
	inFlight         = 64
	throughputCalls  = 20000
	throughputWarmup = 1000
)

// TestCreateOrderThroughput measures CreateOrder (which calls
// user.GetUser) on one user and one order instance, both on SQLite, then
// both on PostgreSQL: the same binaries, the same closed-loop driver, one
// run each, back to back. It only runs with -chaos.throughput; the figures
// go to docs/performance.md by hand.
func TestCreateOrderThroughput(t *testing.T) {
	if !*throughput {
		t.Skip("measures for docs/performance.md; run with -chaos.throughput")
	}
	var rows []string
	for _, driver := range []string{"sqlite", "postgres"} {
		var r string
		t.Run(driver, func(t *testing.T) { r = measureCreateOrder(t, driver) })
		rows = append(rows, r)
	}
	t.Logf("\n| data driver | calls | in flight | failed | calls/s | p50 | p99 | max | load average before |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n%s",
		strings.Join(rows, "\n"))
}

// measureCreateOrder runs the load on a fresh stack on driver and returns
// its table row.
func measureCreateOrder(t *testing.T, driver string) string {
	ctx := devstacktest.Context(t, 10*time.Minute)
	o := stackOpts{users: 1, orders: 1}
	if driver == "postgres" {
		pg := devstacktest.OwnPostgres(t)
		o.env = postgresEnv(devstacktest.PostgresDatabase(t, pg.DSN("postgres")))
	}
	s := startStack(t, ctx, o)
	buyer := newBuyer(t, ctx, s)
	oc := newOrderCalls(t, s, s.Instances("order"), buyer)
	closedLoop(ctx, throughputWarmup, oc.Call)
	load := loadAverage()
	start := time.Now()
	calls := closedLoop(ctx, throughputCalls, oc.Call)
	took := time.Since(start)
	failed := calls.Failed()
	t.Logf("%s: %d calls in %s, %s", driver, len(calls), took.Round(time.Millisecond), calls.ByCode())
	if len(failed) > 0 {
		t.Errorf("%d of %d calls failed (%s)", len(failed), len(calls), failed.ByCode())
	}
	return fmt.Sprintf("| %s | %d | %d | %d | %.0f | %s | %s | %s | %s |", driver, len(calls), inFlight, len(failed),
		float64(len(calls))/took.Seconds(), Dur(calls.Quantile(0.5)), Dur(calls.Quantile(0.99)), Dur(calls.Max()), load)
}

// closedLoop makes n calls, inFlight at a time, each caller sending its
// next call as soon as its last one returned, and records every one.
func closedLoop(ctx context.Context, n int, call func(context.Context) error) chaos.Calls {
	var (
		mu    sync.Mutex
		calls = make(chaos.Calls, 0, n)
		next  = make(chan struct{}, n)
		wg    sync.WaitGroup
	)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				begin := time.Now()
				err := call(cctx)
				c := chaos.Call{Start: begin, Latency: time.Since(begin), Code: status.Code(err)}
				cancel()
				mu.Lock()
				calls = append(calls, c)
				mu.Unlock()
				if ctx.Err() != nil && c.Code != codes.OK {
					return
				}
			}
		}()
	}
	wg.Wait()
	return calls
}

// loadAverage is the first three fields of /proc/loadavg, to tell whether
// the machine was shared during a run.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
