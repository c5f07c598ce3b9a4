package multihost_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/rampart-go/rampart/test/chaos"
	"github.com/rampart-go/rampart/test/multihost"
)

// observeConsul follows, while a is cut from the Consul server, what each
// side tells about a: the server's member status of a and the passing
// instances on a in its catalog, and the answers of a's and b's agents to
// a discovery query (passing user instances), and returns the changes as
// a timeline from the fault's start.
func observeConsul(ctx context.Context, w *world) []string {
	begin := time.Now()
	agentA := api.DefaultNonPooledConfig()
	agentA.Address = multihost.A.Addr(consulHTTP)
	agentB := api.DefaultNonPooledConfig()
	agentB.Address = multihost.B.Addr(consulHTTP)
	ca, errA := api.NewClient(agentA)
	cb, errB := api.NewClient(agentB)
	if errA != nil || errB != nil {
		return []string{fmt.Sprintf("observe: %v %v", errA, errB)}
	}
	defer agentA.Transport.CloseIdleConnections()
	defer agentB.Transport.CloseIdleConnections()

	var timeline []string
	last := ""
	for ctx.Err() == nil {
		state := strings.Join([]string{
			"server: a " + memberStatus(w.consul, "a") + ", " + passingOn(ctx, w.consul, "a"),
			"a's agent: " + passingOn(ctx, ca, "a"),
			"b's agent: " + passingOn(ctx, cb, "a"),
		}, "; ")
		if ctx.Err() != nil {
			break // the answers were cut short by the fault's end, not by Consul
		}
		if state != last {
			timeline = append(timeline, fmt.Sprintf("at +%s: %s", chaos.Dur(time.Since(begin)), state))
			last = state
		}
		sleepCtx(ctx, 250*time.Millisecond)
	}
	return append([]string{"what Consul told about a while it was cut from the server (a change per line; discovery answers count passing user/order instances on a):"}, timeline...)
}

func memberStatus(c *api.Client, node string) string {
	members, err := c.Agent().Members(false)
	if err != nil {
		return "members: error"
	}
	for _, m := range members {
		if m.Name == node {
			return map[int]string{0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}[m.Status]
		}
	}
	return "not a member"
}

// passingOn counts the passing user and order instances on node as c's
// agent answers a discovery query, or says how it failed.
func passingOn(ctx context.Context, c *api.Client, node string) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	n := 0
	for _, svc := range []string{"user", "order"} {
		entries, _, err := c.Health().Service(svc, "", true, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			msg := err.Error()
			if i := strings.LastIndex(msg, ": "); i >= 0 && len(msg)-i < 80 {
				msg = msg[i+2:]
			}
			return "discovery error (" + msg + ")"
		}
		for _, e := range entries {
			if e.Node.Node == node {
				n++
			}
		}
	}
	return fmt.Sprintf("%d of a's 2 instances passing", n)
}
