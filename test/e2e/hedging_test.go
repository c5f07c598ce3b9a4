package e2e

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/middleware/faults"
)

// getUserLatency matches order's client access log line of one GetUser
// call and captures its latency in seconds: the whole logical call as
// order's client sees it, hedges included.
var getUserLatency = regexp.MustCompile(`kind=client operation=` + regexp.QuoteMeta(getUser) + ` .*latency=([0-9.eE+-]+)`)

// clientGetUserLatencies returns the latencies of the GetUser calls order
// logged, in log order.
func clientGetUserLatencies(t *testing.T, logPath string) []time.Duration {
	t.Helper()
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Duration
	for line := range strings.Lines(string(b)) {
		if m := getUserLatency.FindStringSubmatch(line); m != nil {
			s, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				t.Fatalf("latency %q: %v", m[1], err)
			}
			out = append(out, time.Duration(s*float64(time.Second)))
		}
	}
	return out
}

// p99 is the 99th percentile of ds (nearest rank).
func p99(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	return s[int(math.Ceil(0.99*float64(len(s))))-1]
}

// TestHedgingCutsTheTail: of two user instances, one holds half of its
// GetUser calls 500 ms. An order instance that hedges GetUser at 50 ms
// keeps the p99 of GetUser, as its client logs it, at 150 ms or less, while
// sending user at most 1.3 attempts per call; an order instance with the
// shipped config (no hedging) is measured beside it and logged. Both order
// instances run at once on the same user instances, one after the other.
func TestHedgingCutsTheTail(t *testing.T) {
	const (
		warmup    = 20
		hedged    = 300 // enough calls for a p99 (the 4th slowest)
		plain     = 100 // logged only
		workers   = 4
		maxP99    = 150 * time.Millisecond
		maxRatio  = 1.3
		hedgeWait = "50ms"
	)
	ctx := devstacktest.Context(t, 2*time.Minute)
	orderConf := configWith(t, "order", []string{"clients", "user", "methods", getUser},
		map[string]any{"hedging": map[string]any{"delay": hedgeWait, "max_attempts": 2}})
	s := startStackWith(t, ctx, 2, 1, stackExtras{configs: map[string]string{"order": orderConf}})
	hedging := s.Instances("order")[0]

	// The same binary with the shipped config, hedging off, beside it.
	env, err := s.ServiceEnv(ctx, "order")
	if err != nil {
		t.Fatal(err)
	}
	noHedging := startInstance(t, ctx, devstack.ServiceSpec{
		Name:       "order",
		Binary:     hedging.Spec.Binary,
		Config:     filepath.Join(repoRoot(t), "configs", "order.yaml"),
		ConsulAddr: s.ConsulAddr,
		Env:        append(env, "RAMPART_DATA_DRIVER=memory"),
		LogDir:     t.TempDir(),
	}, "with hedging off")

	buyer := newBuyer(t, ctx, s)
	users := s.Instances("user")
	hedgingPlace := placeOrder(orderAt(t, s, hedging), buyer, 5*time.Second)
	plainPlace := placeOrder(orderAt(t, s, noHedging), buyer, 5*time.Second)
	// Both order instances connect to both user instances before the
	// fault: a hedge goes only to an instance the balancer offers.
	for _, place := range []func(context.Context) error{hedgingPlace, plainPlace} {
		if failed := runCalls(ctx, warmup, workers, func(ctx context.Context, _ int) error { return place(ctx) }).failed(); len(failed) > 0 {
			t.Fatalf("warm-up: %d calls failed: %v", len(failed), failed.byCode())
		}
	}
	// The fault goes on the instance the balancer favours: on the idle
	// one it would prove little.
	slow := busiest(t, ctx, users, getUser)
	setFaults(t, ctx, []*devstack.ServiceProc{slow}, map[string]faults.Fault{getUser: {Delay: &faults.Delay{Percent: 50, Duration: 500 * time.Millisecond}}})

	measure := func(name string, p *devstack.ServiceProc, place func(context.Context) error, n int) (p99Latency time.Duration, attempts int64) {
		logged := len(clientGetUserLatencies(t, p.LogPath))
		before := serverAttempts(t, ctx, users, getUser)
		res := runCalls(ctx, n, workers, func(ctx context.Context, _ int) error { return place(ctx) })
		attempts = serverAttempts(t, ctx, users, getUser) - before
		if failed := res.failed(); len(failed) > 0 {
			t.Errorf("%s: %d of %d CreateOrder failed: %v", name, len(failed), n, failed.byCode())
		}
		lat := clientGetUserLatencies(t, p.LogPath)[logged:]
		if len(lat) != n {
			t.Fatalf("%s: order logged %d GetUser calls for %d CreateOrder", name, len(lat), n)
		}
		p99Latency = p99(lat)
		t.Logf("%s: %d calls, GetUser as order sees it: p50 %v, p99 %v, max %v; attempts reaching user %d (%.2f per call)",
			name, n, slices.Sorted(slices.Values(lat))[n/2].Round(time.Millisecond), p99Latency.Round(time.Millisecond),
			slices.Max(lat).Round(time.Millisecond), attempts, float64(attempts)/float64(n))
		return p99Latency, attempts
	}

	gotP99, attempts := measure("hedging at "+hedgeWait, hedging, hedgingPlace, hedged)
	offP99, _ := measure("hedging off", noHedging, plainPlace, plain)
	hedges := scrapeSum(t, ctx, hedging.HTTPAddr, "rampart_client_hedges_total")
	st, err := devstacktest.Faults(ctx, slow)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("p99 with hedging %v, without %v; %v hedges sent; %d delays injected, %d of them cut short by a cancellation",
		gotP99.Round(time.Millisecond), offP99.Round(time.Millisecond), hedges, st.Injected[getUser].Delay, st.Injected[getUser].Interrupted)

	if gotP99 > maxP99 {
		t.Errorf("p99 of GetUser with hedging = %v, want <= %v", gotP99, maxP99)
	}
	if ratio := float64(attempts) / hedged; ratio > maxRatio {
		t.Errorf("attempts reaching user = %d for %d calls (%.2f per call), want <= %.1f", attempts, hedged, ratio, maxRatio)
	}
	// The test proves something only if hedges went out and the delays
	// they answered were cut short.
	if hedges == 0 || st.Injected[getUser].Interrupted == 0 {
		t.Errorf("%v hedges, %d delays cut short: the hedging path was not exercised", hedges, st.Injected[getUser].Interrupted)
	}
}

// scrapeSum sums every series of metric name on an instance's /metrics.
func scrapeSum(t *testing.T, ctx context.Context, httpAddr, name string) float64 {
	t.Helper()
	var sum float64
	for k, v := range scrape(t, ctx, httpAddr) {
		if series, _, _ := strings.Cut(k, "{"); series == name {
			sum += v
		}
	}
	return sum
}
