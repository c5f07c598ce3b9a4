package devstack

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"

	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/server"
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

// PortForTest reserves a loopback port for the whole test (see
// ReservePort), for an address that must be known before the process that
// binds it starts, or one that must stay unanswered.
func PortForTest(tb testing.TB) int {
	tb.Helper()
	port, release, err := ReservePort()
	if err != nil {
		tb.Fatalf("port for test: %v", err)
	}
	tb.Cleanup(release)
	return port
}

// StackForTest starts a stack in a directory of the test and stops it in
// tb.Cleanup; if the start fails or the test does, the tail of every log
// is written to the test log. cfg.WorkDir is ignored.
func StackForTest(tb testing.TB, ctx context.Context, cfg StackConfig) *Stack {
	tb.Helper()
	cfg.WorkDir = tb.TempDir()
	dump := func() {
		for _, p := range Logs(cfg.WorkDir) {
			tb.Logf("--- %s (last %d lines) ---\n%s", p, logTailLines, LogTail(p, logTailLines))
		}
	}
	s, err := StartStack(ctx, cfg)
	if err != nil {
		// StartStack has stopped what it started; its logs are still here.
		dump()
		tb.Fatalf("start stack: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			dump()
		}
		if err := s.Stop(); err != nil {
			tb.Errorf("stop stack: %v", err)
		}
	})
	return s
}

// logTailLines is how much of each log a failed test prints.
const logTailLines = 40

// The demo services' names, as in Consul and under cmd/.
const (
	UserService  = "user"
	OrderService = "order"
)

// ServiceCounts lists users user and orders order instances, leaving out
// a service asked for zero times.
func ServiceCounts(users, orders int) []ServiceCount {
	var out []ServiceCount
	if users > 0 {
		out = append(out, ServiceCount{Name: UserService, Instances: users})
	}
	if orders > 0 {
		out = append(out, ServiceCount{Name: OrderService, Instances: orders})
	}
	return out
}

// ConsulClientForTest is a client of the agent at addr whose idle
// connections are closed when the test ends, so no transport goroutine
// outlives it.
func ConsulClientForTest(tb testing.TB, addr string) *api.Client {
	tb.Helper()
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = addr
	c, err := api.NewClient(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cfg.Transport.CloseIdleConnections)
	return c
}

// DemoForTest dials the demo clients (untraced) and closes them when the
// test ends.
func DemoForTest(tb testing.TB, ctx context.Context, consul *api.Client) *DemoClients {
	tb.Helper()
	c, err := DialDemo(ctx, consul, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// DialForTest dials clients.<name> of c (normally discovery:///<name>)
// through the agent at consulAddr, with the client chain every service uses
// on its peers, untraced; the connection and its registry close when the
// test ends.
func DialForTest(tb testing.TB, consulAddr string, c *conf.Bootstrap, name string) *grpc.ClientConn {
	tb.Helper()
	reg := consul.New(ConsulClientForTest(tb, consulAddr))
	tb.Cleanup(func() { _ = reg.Close() })
	server.Setup()
	conn, closeConn, err := server.NewDialer(reg, middleware.NewClients(c.Clients, log.NewStdLogger(io.Discard), nil)).Dial(name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(closeConn)
	return conn
}

// ContextForTest returns a context that ends after d or when the test ends.
func ContextForTest(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}
