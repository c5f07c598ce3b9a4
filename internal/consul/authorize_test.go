package consul_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// userID is the identity of the server whose calls are authorized; the
// agent does not check its trust domain.
var userID = spiffeid.RequireFromString("spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/user")

func newAuthorizer(t *testing.T, client *api.Client, opts ...consul.Option) *consul.Authorizer {
	t.Helper()
	a, err := consul.NewAuthorizer(client, userID, append([]consul.Option{consul.WithLogger(&testLogger{t: t})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// setDeny makes the intention caller -> user deny.
func setDeny(t *testing.T, client *api.Client, caller string) {
	t.Helper()
	if _, err := client.Connect().IntentionUpsert(&api.Intention{
		SourceName: caller, DestinationName: "user", Action: api.IntentionActionDeny,
	}, nil); err != nil {
		t.Fatal(err)
	}
}

// setIntention makes the intention order -> user allow or deny.
func setIntention(t *testing.T, client *api.Client, action api.IntentionAction) {
	t.Helper()
	_, err := client.Connect().IntentionUpsert(&api.Intention{
		SourceName: "order", DestinationName: "user", Action: action,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

func TestNewAuthorizerWantsAServiceIdentity(t *testing.T) {
	client := devstacktest.ConsulClient(t, "127.0.0.1:1")
	for _, id := range []spiffeid.ID{{}, spiffeid.RequireFromString("spiffe://td.consul/agent/client/dc/dc1/id/n1")} {
		if _, err := consul.NewAuthorizer(client, id); err == nil {
			t.Errorf("NewAuthorizer(%q) succeeded", id)
		}
	}
}

func TestAuthorizeByIntentions(t *testing.T) {
	agent := devstacktest.Consul(t)
	client := devstacktest.ConsulClient(t, agent.Addr())
	ctx := testContext(t, time.Minute)
	a := newAuthorizer(t, client, consul.WithAuthorization(0, 2*time.Second))

	// The dev agent runs without ACLs: no intention means allowed.
	allowed, reason, err := a.Authorize(ctx, "order", "user")
	if err != nil || !allowed {
		t.Fatalf("no intention: %v, %q, %v; want allowed", allowed, reason, err)
	}
	t.Logf("no intention: %q", reason)

	setIntention(t, client, api.IntentionActionDeny)
	waitFor(t, 5*time.Second, "denied", func() bool {
		allowed, reason, err = a.Authorize(ctx, "order", "user")
		return err == nil && !allowed
	})
	if !strings.Contains(reason, "order") || !strings.Contains(reason, "user") {
		t.Errorf("deny reason %q does not name the intention", reason)
	}
	t.Logf("deny: %q", reason)
	// Another caller is not concerned by order's intention.
	if allowed, _, err := a.Authorize(ctx, "billing", "user"); err != nil || !allowed {
		t.Errorf("billing -> user: %v, %v; want allowed", allowed, err)
	}
}

// TestIntentionChange measures how long a flipped intention takes to apply
// to calls: the agent's own delay (TTL 0) and the whole bound with the
// default 1 s cache, each over several flips. The bound is TTL + the
// agent's delay.
func TestIntentionChange(t *testing.T) {
	agent := devstacktest.Consul(t)
	client := devstacktest.ConsulClient(t, agent.Addr())
	ctx := testContext(t, 2*time.Minute)
	const flips = 5
	for _, ttl := range []time.Duration{0, time.Second} {
		a := newAuthorizer(t, client, consul.WithAuthorization(ttl, 2*time.Second))
		var took []time.Duration
		for i := range 2 * flips {
			want := i%2 == 1 // deny first, then allow, alternating
			action := api.IntentionActionDeny
			if want {
				action = api.IntentionActionAllow
			}
			// Fill the cache with the old answer first: the worst case.
			if allowed, _, err := a.Authorize(ctx, "order", "user"); err != nil || allowed == want {
				t.Fatalf("flip %d: before the change: %v, %v", i, allowed, err)
			}
			start := time.Now()
			setIntention(t, client, action)
			waitFor(t, ttl+5*time.Second, "the new intention applied", func() bool {
				allowed, _, err := a.Authorize(ctx, "order", "user")
				return err == nil && allowed == want
			})
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		t.Logf("MEASURE intention change (write returned -> first call with the new answer), cache TTL %s, %d flips: median %s, max %s",
			ttl, len(took), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
		if limit := ttl + time.Second; took[len(took)-1] > limit {
			t.Errorf("a change took %s to apply, over the bound %s (TTL + 1 s for the agent)", took[len(took)-1], limit)
		}
	}
}

// An agent that is down takes no decision away: a pair it decided keeps
// its last decision, allowed or denied, logged once; a pair it never
// decided fails closed with the error; its first answer after the outage
// applies at once.
func TestAuthorizeWhileConsulIsDown(t *testing.T) {
	agent := devstacktest.Consul(t)
	client := devstacktest.ConsulClient(t, agent.Addr())
	ctx := testContext(t, 2*time.Minute)
	const ttl = 300 * time.Millisecond
	logger := &testLogger{t: t}
	a, newErr := consul.NewAuthorizer(client, userID, consul.WithLogger(logger), consul.WithAuthorization(ttl, time.Second))
	if newErr != nil {
		t.Fatal(newErr)
	}
	setDeny(t, client, "intruder")
	if allowed, _, err := a.Authorize(ctx, "order", "user"); err != nil || !allowed {
		t.Fatalf("before: %v, %v", allowed, err)
	}
	if allowed, _, err := a.Authorize(ctx, "intruder", "user"); err != nil || allowed {
		t.Fatalf("before: intruder %v, %v; want denied", allowed, err)
	}

	agent.Kill()
	time.Sleep(ttl)
	for range 3 {
		allowed, reason, err := a.Authorize(ctx, "order", "user")
		if err != nil || !allowed || !strings.Contains(reason, "last known") {
			t.Errorf("agent down: order %v, %q, %v; want allowed, the last known decision", allowed, reason, err)
		}
		if allowed, _, err = a.Authorize(ctx, "intruder", "user"); err != nil || allowed {
			t.Errorf("agent down: intruder %v, %v; want still denied", allowed, err)
		}
		time.Sleep(ttl) // each round asks the agent again
	}
	if n := logger.count("serving the last decision"); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}
	allowed, _, err := a.Authorize(ctx, "billing", "user")
	if err == nil {
		t.Fatalf("agent down, a pair never decided: %v with no error, want an error (fail closed)", allowed)
	}
	t.Logf("never decided, agent down: %v", err)

	if err = agent.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// The restarted dev agent has no intentions: intruder is allowed now,
	// once the last decision's TTL is over.
	time.Sleep(ttl)
	if allowed, reason, backErr := a.Authorize(ctx, "intruder", "user"); backErr != nil || !allowed {
		t.Errorf("agent back: intruder %v, %q, %v; want the agent's answer", allowed, reason, backErr)
	}
	if n := logger.count("answers again"); n != 1 {
		t.Errorf("the recovery was logged %d times, want once", n)
	}
}

// A hung agent costs one request per pair, however many calls wait, and
// each call gives up after the timeout.
func TestAuthorizeHungAgent(t *testing.T) {
	addr, accepted := startHung(t)
	client := devstacktest.ConsulClient(t, addr)
	ctx := testContext(t, time.Minute)
	const timeout = 300 * time.Millisecond
	a := newAuthorizer(t, client, consul.WithAuthorization(time.Second, timeout))

	var wg sync.WaitGroup
	start := time.Now()
	for range 20 {
		wg.Go(func() {
			if _, _, err := a.Authorize(ctx, "order", "user"); err == nil || !strings.Contains(err.Error(), "did not answer") {
				t.Errorf("hung agent: %v, want a timeout", err)
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took > timeout+time.Second {
		t.Errorf("calls waited %s, want about %s", took, timeout)
	}
	// A second round while the first request still hangs joins it.
	if _, _, err := a.Authorize(ctx, "order", "user"); err == nil {
		t.Error("second round succeeded")
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections to the agent, want 1 shared request", n)
	}
	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := a.Authorize(ctx2, "order", "billing"); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("cancelled call: %v", err)
	}
}
