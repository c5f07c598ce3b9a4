package devstack_test

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// An agent with ACLs keeps across a Restart what a real cluster keeps on
// its servers: the CA (same root, same trust domain), the tokens made
// through it (same secrets, same rules) and its intentions. Registrations
// are lost, as on any dev agent restart.
func TestACLAgentRestartKeepsCATokensAndIntentions(t *testing.T) {
	agent := devstacktest.Consul(t, devstack.WithConsulACL())
	ctx := devstacktest.Context(t, 2*time.Minute)
	mgmt := devstacktest.TokenClient(t, agent.Addr(), agent.ManagementToken())

	token, err := agent.ServiceToken(ctx, "order", "user")
	if err != nil {
		t.Fatal(err)
	}
	if err = agent.Allow(ctx, "order", "user"); err != nil {
		t.Fatal(err)
	}
	order := devstacktest.TokenClient(t, agent.Addr(), token)
	register := func() error {
		return order.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "order-1", Name: "order", Port: 9})
	}
	if err = register(); err != nil {
		t.Fatalf("register with the service token: %v", err)
	}
	before := activeRoot(t, mgmt)
	oldRoots, _, err := mgmt.Agent().ConnectCARoots(nil)
	if err != nil {
		t.Fatal(err)
	}

	if err = agent.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	after := activeRoot(t, mgmt)
	if after.ID != before.ID || after.RootCertPEM != before.RootCertPEM {
		t.Errorf("root %s -> %s after the restart, want the same CA", before.ID, after.ID)
	}
	roots, _, err := mgmt.Agent().ConnectCARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	if roots.TrustDomain != oldRoots.TrustDomain {
		t.Errorf("trust domain %q -> %q after the restart, want the same", oldRoots.TrustDomain, roots.TrustDomain)
	}
	services, err := mgmt.Agent().Services()
	if err != nil || len(services) != 0 {
		t.Errorf("registrations after the restart: %v, %v; want none (a dev agent's are lost)", services, err)
	}
	if err = register(); err != nil {
		t.Errorf("register with the same token after the restart: %v", err)
	}
	// The token's policy is the one it was made with: no write on user.
	if err = order.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "user-1", Name: "user", Port: 9}); err == nil {
		t.Error("the replayed token may register user; want its policy unchanged (read only)")
	}
	auth, err := order.Agent().ConnectAuthorize(&api.AgentAuthorizeParams{
		Target: "order", ClientCertURI: "spiffe://" + roots.TrustDomain + "/ns/default/dc/dc1/svc/devstack",
	})
	if err != nil || auth.Authorized {
		t.Errorf("devstack -> order, never allowed: %+v, %v; want denied", auth, err)
	}
	intentions, _, err := mgmt.Connect().Intentions(nil)
	if err != nil || len(intentions) != 1 || intentions[0].SourceName != "order" || intentions[0].DestinationName != "user" {
		t.Errorf("intentions after the restart: %v, %v; want order -> user", intentions, err)
	}
}

func activeRoot(t *testing.T, c *api.Client) *api.CARoot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		roots, _, err := c.Connect().CARoots((&api.QueryOptions{}).WithContext(ctx))
		if err == nil {
			for _, r := range roots.Roots {
				if r.Active {
					return r
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no active CA root")
	return nil
}
