package consul_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/registry"
	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// tokenClient is a client of the agent at addr that sends token.
func tokenClient(t *testing.T, addr, token string) *api.Client {
	t.Helper()
	c := devstacktest.ConsulClient(t, addr)
	c.SetHeaders(map[string][]string{"X-Consul-Token": {token}})
	return c
}

// Against an agent with ACLs on and default deny, a token with
// devstack.ServicePolicyRules is enough for everything an instance of
// order (which calls user) does through this package, and each rule is
// needed: dropping one breaks the thing the rule is for.
func TestLeastPrivilegeToken(t *testing.T) {
	agent := devstacktest.Consul(t, devstack.WithConsulACL())
	ctx := testContext(t, 2*time.Minute)
	admin := tokenClient(t, agent.Addr(), agent.ManagementToken())
	userSrv := startGRPC(t)
	orderSrv := startGRPC(t)
	users := consul.New(admin, consul.WithLogger(&testLogger{t: t}))
	t.Cleanup(func() { _ = users.Close() })
	if err := users.Register(ctx, newInstance("user", "user-1", userSrv.addr)); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Connect().IntentionUpsert(&api.Intention{
		SourceName: "user", DestinationName: "order", Action: api.IntentionActionAllow,
	}, nil); err != nil {
		t.Fatal(err)
	}

	rules := devstack.ServicePolicyRules("order", "user")
	lines := strings.Split(strings.TrimSpace(rules), "\n")
	t.Logf("policy of order:\n%s", rules)
	if len(lines) != 3 {
		t.Fatalf("%d rules, want 3: %q", len(lines), lines)
	}
	// What an instance of order does, each with what it needs.
	type capability struct {
		name string
		do   func(c *api.Client) error
	}
	caps := []capability{
		{"register, check and deregister its instance", func(c *api.Client) error {
			r := consul.New(c, consul.WithLogger(&testLogger{t: t}))
			defer func() { _ = r.Close() }()
			ins := newInstance("order", "order-1", orderSrv.addr)
			if err := r.Register(ctx, ins); err != nil {
				return err
			}
			// A refused registration is retried in the background, so
			// Register's nil does not say it succeeded: ask the agent.
			if _, _, err := admin.Agent().Service(ins.ID, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
				return fmt.Errorf("not registered: %w", err)
			}
			return r.Deregister(ctx, ins)
		}},
		{"discover user", func(c *api.Client) error {
			set, err := consul.New(c).GetService(ctx, "user")
			if err == nil && len(set) != 1 {
				return fmt.Errorf("found %d instances of user, want 1", len(set))
			}
			return err
		}},
		{"get its leaf certificate and the roots", func(c *api.Client) error {
			src, err := consul.NewCertSource(ctx, c, "order", consul.WithLogger(&testLogger{t: t}), consul.WithStartTimeout(2*time.Second))
			if err == nil {
				_ = src.Close()
			}
			return err
		}},
		{"authorize its callers", func(c *api.Client) error {
			a, err := consul.NewAuthorizer(c, orderID, consul.WithLogger(&testLogger{t: t}))
			if err != nil {
				return err
			}
			allowed, reason, err := a.Authorize(ctx, "user", "order")
			if err == nil && !allowed {
				return fmt.Errorf("user -> order denied (%s), want the allow intention", reason)
			}
			return err
		}},
	}
	check := func(token string) map[string]error {
		c := tokenClient(t, agent.Addr(), token)
		out := map[string]error{}
		for _, cp := range caps {
			out[cp.name] = cp.do(c)
		}
		return out
	}

	full, err := agent.ServiceToken(ctx, "order", "user")
	if err != nil {
		t.Fatal(err)
	}
	for name, err := range check(full) {
		if err != nil {
			t.Errorf("with the least policy: %s: %v", name, err)
		}
	}

	// Each rule dropped in turn: something must break.
	for i, line := range lines {
		rest := strings.Join(append(append([]string{}, lines[:i]...), lines[i+1:]...), "\n")
		token, perr := agent.PolicyToken(ctx, "order-without-"+string(rune('a'+i)), rest)
		if perr != nil {
			t.Fatal(perr)
		}
		var broken []string
		for name, err := range check(token) {
			if err != nil {
				broken = append(broken, name+": "+err.Error())
			}
		}
		if len(broken) == 0 {
			t.Errorf("without %q everything still works: the rule is not needed", line)
		}
		t.Logf("without %q:\n  %s", line, strings.Join(broken, "\n  "))
	}

	// The refusals name the missing permission. The leaf is asked for a
	// service whose leaf the agent has not issued yet: Consul 1.22's agent
	// checks the token only when it has a leaf signed, and serves a leaf
	// it holds to any token, the anonymous one included (logged below).
	none, err := agent.PolicyToken(ctx, "nothing", `key "unrelated" { policy = "read" }`)
	if err != nil {
		t.Fatal(err)
	}
	noneClient := tokenClient(t, agent.Addr(), none)
	_, err = consul.NewCertSource(ctx, noneClient, "payments", consul.WithLogger(&testLogger{t: t}), consul.WithStartTimeout(time.Second))
	if err == nil || !strings.Contains(err.Error(), "needs service:write on payments") || !strings.Contains(err.Error(), "403") {
		t.Errorf("leaf without permission: %v, want an error naming service:write on payments", err)
	}
	if err := check(none)["authorize its callers"]; err == nil || !strings.Contains(err.Error(), "needs service:write on order") {
		t.Errorf("authorize without permission: %v, want an error naming service:write on order", err)
	}
	if _, _, err := devstacktest.ConsulClient(t, agent.Addr()).Agent().ConnectCALeaf("order", nil); err == nil {
		t.Logf("NOTE: the agent served the leaf of order, private key included, to the anonymous token: it had one cached")
	}
}

// orderID is the identity of order, whose callers are authorized.
var orderID = spiffeid.RequireFromString("spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/order")

// maxAfterPolicyFix bounds how long a refused registration or a filtered
// watch takes to succeed once the policy is fixed: the retry backoff's
// maximum (1 s in these tests) plus slack for a loaded machine.
const maxAfterPolicyFix = 3 * time.Second

// A token without service:write on order: Register does not fail, the
// refusal is logged as an error naming the permission, nothing is
// registered, and once the policy is fixed the instance registers by
// itself, within maxAfterPolicyFix.
func TestRefusedRegistrationRetries(t *testing.T) {
	agent := devstacktest.Consul(t, devstack.WithConsulACL())
	ctx := testContext(t, time.Minute)
	admin := tokenClient(t, agent.Addr(), agent.ManagementToken())
	r, logger := policyRegistry(t, ctx, agent, "order", `node_prefix "" { policy = "read" }`)
	ins := newInstance("order", "order-1", startGRPC(t).addr)
	if err := r.Register(ctx, ins); err != nil {
		t.Fatalf("Register refused by ACL = %v, want nil (retried in the background)", err)
	}
	time.Sleep(time.Second) // a few retries
	if n := logger.count("ERROR msg=consul: register order-1 refused"); n != 1 {
		t.Errorf("%d refusal errors logged in 1 s, want 1 (again only after a minute)", n)
	}
	if logger.count("the ACL token needs service:write on order") == 0 {
		t.Error("the refusal does not name service:write on order")
	}
	if _, _, err := admin.Agent().Service("order-1", nil); err == nil {
		t.Fatal("order-1 is registered with a token without service:write")
	}

	if err := agent.UpdatePolicy(ctx, "order", devstack.ServicePolicyRules("order")); err != nil {
		t.Fatal(err)
	}
	fixed := time.Now()
	wctx, cancel := context.WithTimeout(ctx, maxAfterPolicyFix)
	defer cancel()
	if _, err := devstack.WaitPassing(wctx, admin, "order", 1); err != nil {
		t.Fatalf("after the policy was fixed: %v", err)
	}
	t.Logf("TIMING registered %s after the policy was fixed", time.Since(fixed).Round(time.Millisecond))
	if err := r.Deregister(ctx, ins); err != nil {
		t.Error(err)
	}
}

// A token that may read user but not its node: Consul answers the watch
// with nobody, no error, so the watcher logs that the answer was filtered
// and names the permissions; with the policy fixed it finds the instance.
func TestWatchFilteredByACL(t *testing.T) {
	agent := devstacktest.Consul(t, devstack.WithConsulACL())
	ctx := testContext(t, time.Minute)
	users := consul.New(tokenClient(t, agent.Addr(), agent.ManagementToken()), consul.WithLogger(&testLogger{t: t}))
	t.Cleanup(func() { _ = users.Close() })
	if err := users.Register(ctx, newInstance("user", "user-1", startGRPC(t).addr)); err != nil {
		t.Fatal(err)
	}
	r, logger := policyRegistry(t, ctx, agent, "order", `service "user" { policy = "read" }`)
	w, err := r.Watch(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	if set, err := w.Next(); err != nil || len(set) != 0 {
		t.Fatalf("first set without node:read = %v, %v; want empty", ids(set), err)
	}
	if logger.count("ERROR msg=consul: watch user: Consul filtered every instance out") != 1 ||
		logger.count(`node:read on its nodes (node_prefix "" read)`) != 1 {
		t.Error("the filtered answer is not logged once as an error naming node:read")
	}

	if err := agent.UpdatePolicy(ctx, "order", devstack.ServicePolicyRules("order", "user")); err != nil {
		t.Fatal(err)
	}
	fixed := time.Now()
	got := make(chan []*registry.ServiceInstance, 1)
	go func() {
		set, _ := w.Next()
		got <- set
	}()
	select {
	case set := <-got:
		if len(set) != 1 {
			t.Fatalf("after the policy was fixed: %v, want user-1", ids(set))
		}
		t.Logf("TIMING found user-1 %s after the policy was fixed", time.Since(fixed).Round(time.Millisecond))
	case <-time.After(maxAfterPolicyFix):
		t.Fatalf("no instance %s after the policy was fixed", maxAfterPolicyFix)
	}
}

// policyRegistry is a Registry whose token has a new policy called name
// with rules (UpdatePolicy changes it), retrying at most every second,
// closed when the test ends; and its logger.
func policyRegistry(t *testing.T, ctx context.Context, agent *devstack.ConsulAgent, name, rules string) (*consul.Registry, *testLogger) {
	t.Helper()
	token, err := agent.PolicyToken(ctx, name, rules)
	if err != nil {
		t.Fatal(err)
	}
	logger := &testLogger{t: t}
	r := consul.New(tokenClient(t, agent.Addr(), token), consul.WithLogger(logger), consul.WithRetryBackoff(50*time.Millisecond, time.Second))
	t.Cleanup(func() { _ = r.Close() })
	return r, logger
}
