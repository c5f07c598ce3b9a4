package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// TestClientMetricsDoNotGrowWithPeerRestarts: the user instance behind
// order is replaced 10 times, each time on new ports, as make run and Nomad
// do. order's client RPC metrics stay one series per target, method and
// code: none names an instance address, so restarts add nothing.
func TestClientMetricsDoNotGrowWithPeerRestarts(t *testing.T) {
	const (
		restarts = 10
		series   = "rpc_client_call_duration_seconds_count"
	)
	ctx := devstacktest.Context(t, 3*time.Minute)
	s := startStack(t, ctx, 1, 1)
	consul := stackConsul(t, s)
	buyer := newBuyer(t, ctx, s)
	order := s.Instances("order")[0]
	client := orderAt(t, s, order)
	// countSeries also counts the distinct (method, code) pairs: with
	// labels of target, method and code only, there is one series each.
	type seriesCount struct {
		total, pairs, okGetUser int
		withAddr                []string
	}
	countSeries := func() seriesCount {
		var c seriesCount
		seen := map[string]bool{}
		for k := range scrape(t, ctx, order.HTTPAddr) {
			name, labels, _ := strings.Cut(k, "{")
			if name != series {
				continue
			}
			c.total++
			seen[devstack.LabelValue(labels, "rpc_method")+" "+devstack.LabelValue(labels, "rpc_response_status_code")] = true
			if strings.Contains(labels, `rpc_method="user.v1.UserService/GetUser"`) && strings.Contains(labels, `rpc_response_status_code="OK"`) {
				c.okGetUser++
			}
			if strings.Contains(labels, "server_address") || strings.Contains(labels, "server_port") {
				c.withAddr = append(c.withAddr, k)
			}
		}
		c.pairs = len(seen)
		return c
	}

	if err := placeOrder(client, buyer, 5*time.Second)(ctx); err != nil {
		t.Fatal(err)
	}
	before := countSeries().total
	ports := map[string]bool{}
	for i := range restarts {
		old := s.Instances("user")[i]
		ports[old.GRPCAddr] = true
		if err := old.Stop(15 * time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Add(ctx, "user"); err != nil {
			t.Fatal(err)
		}
		if _, err := devstack.WaitPassing(ctx, consul, "user", 1); err != nil {
			t.Fatal(err)
		}
		// The first calls after the swap may meet the old address until the
		// watcher delivers the new one; each order is retried until it lands.
		for err := placeOrder(client, buyer, 5*time.Second)(ctx); err != nil; err = placeOrder(client, buyer, 5*time.Second)(ctx) {
			if ctx.Err() != nil {
				t.Fatalf("no order succeeded after restart %d: %v", i+1, err)
			}
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}
	ports[s.Instances("user")[restarts].GRPCAddr] = true
	got := countSeries()
	t.Logf("%d user instances on %d addresses; %s series before the restarts: %d, after: %d", restarts+1, len(ports), series, before, got.total)
	if len(ports) != restarts+1 {
		t.Fatalf("the restarts reused addresses (%d distinct for %d instances): the test proves nothing", len(ports), restarts+1)
	}
	if len(got.withAddr) > 0 {
		t.Errorf("client metrics name instance addresses: %v", got.withAddr)
	}
	if got.okGetUser != 1 {
		t.Errorf("%d series for GetUser OK, want 1 whatever instance answered", got.okGetUser)
	}
	// Another code (Unavailable while an instance was going) may add a
	// series; an instance never does.
	if got.total != got.pairs {
		t.Errorf("%s: %d series for %d (method, code) pairs after %d restarts (%d before): they grow with the instances", series, got.total, got.pairs, restarts, before)
	}
}
