package devstack

import (
	"context"
	"testing"
	"time"
)

// consulForTestTimeout covers building bin/consul on a fresh machine (a few
// minutes) plus the agent's start-up.
const consulForTestTimeout = 15 * time.Minute

// ConsulForTest starts a fresh Consul dev agent for one test, building
// bin/consul first if needed, and stops it in tb.Cleanup. Every test gets
// its own agent on its own ports, so tests run alone or in parallel. When
// the test failed, the tail of the agent log is written to the test log.
// Extra options (e.g. WithConsulHTTPPort) are applied after the defaults.
func ConsulForTest(tb testing.TB, opts ...ConsulOption) *ConsulAgent {
	tb.Helper()
	root, err := RepoRoot()
	if err != nil {
		tb.Fatalf("consul for test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), consulForTestTimeout)
	defer cancel()
	bin, err := EnsureConsulBinary(ctx, root)
	if err != nil {
		tb.Fatalf("consul for test: %v", err)
	}
	// tb.TempDir is removed after our cleanup below has run (cleanups run
	// last-in first-out), so the log is still there to dump.
	all := append([]ConsulOption{WithConsulBinary(bin), WithConsulDir(tb.TempDir())}, opts...)
	agent, err := StartConsul(ctx, all...)
	if err != nil {
		tb.Fatalf("consul for test: %v", err) // the error carries the log tail
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("consul agent %s log tail (%s):\n%s", agent.NodeName(), agent.LogPath(), agent.LogTail(60))
		}
		if err := agent.Stop(); err != nil {
			tb.Errorf("stop consul agent: %v", err)
		}
	})
	return agent
}
