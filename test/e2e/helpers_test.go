package e2e

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/rampart-go/rampart/cmd/devstack/demo"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/leakcheck"
)

// drainDelay is server.drain_delay in configs/*.yaml: how long a stopping
// instance keeps serving after it left Consul.
const drainDelay = time.Second

// logTailLines is how much of each process log a failed test prints.
const logTailLines = 40

func TestMain(m *testing.M) { leakcheck.Main(m) }

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := devstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// isolateConsul makes sure a developer's CONSUL_HTTP_ADDR is not reused: the
// tests count instances, so each needs an agent of its own.
func isolateConsul(t *testing.T) {
	t.Helper()
	t.Setenv(api.HTTPAddrEnvName, "")
}

// startStack starts a Consul agent of its own plus users and orders
// instances of the two services, and stops all of it when the test ends,
// printing the tail of every log if the test failed.
func startStack(t *testing.T, ctx context.Context, users, orders int) *devstack.Stack {
	t.Helper()
	return startStackWith(t, ctx, users, orders, stackExtras{})
}

// stackExtras changes what startStackWith starts.
type stackExtras struct {
	configs  map[string]string // service name -> config file replacing configs/<name>.yaml
	env      []string          // extra environment of every instance
	security string            // devstack's StackConfig.Security: "" keeps the configs' (mtls)
}

// startStackWith is startStack with replaced config files or extra
// environment, for tests that need another policy or an exporter.
func startStackWith(t *testing.T, ctx context.Context, users, orders int, extras stackExtras) *devstack.Stack {
	t.Helper()
	isolateConsul(t)
	return devstacktest.Stack(t, ctx, devstack.StackConfig{
		RepoRoot: repoRoot(t),
		Services: demo.Services(users, orders),
		Configs:  extras.configs,
		Env:      extras.env,
		Security: extras.security,
	})
}

// consulClient returns a client of the agent at addr, cleaned up with the test.
func consulClient(t *testing.T, addr string) *api.Client {
	t.Helper()
	return devstacktest.ConsulClient(t, addr)
}

// stackConsul is a client of s's agent that may read everything (the
// management token when ACLs are on), cleaned up with the test.
func stackConsul(t *testing.T, s *devstack.Stack) *api.Client {
	t.Helper()
	return devstacktest.StackConsul(t, s)
}

// dialDemo returns clients that reach both services of s through Consul
// discovery, with the certificate of devstack.ClientIdentity in mtls,
// closed when the test ends.
func dialDemo(t *testing.T, ctx context.Context, s *devstack.Stack) *demo.Clients {
	t.Helper()
	return devstacktest.StackDemo(t, ctx, s)
}

// buildUser builds cmd/user into a directory of the test and returns the binary.
func buildUser(t *testing.T, ctx context.Context) string {
	t.Helper()
	bins, err := devstack.BuildServices(ctx, repoRoot(t), t.TempDir(), "user")
	if err != nil {
		t.Fatal(err)
	}
	return bins["user"]
}

// startInstance starts one instance outside any stack, its config
// configs/<name>.yaml unless spec says otherwise, and stops it when the
// test ends; if the start or the test fails, every log under spec.LogDir
// goes to the test log. what says how it is started, for the failure.
func startInstance(t *testing.T, ctx context.Context, spec devstack.ServiceSpec, what string) *devstack.ServiceProc {
	t.Helper()
	if spec.Config == "" {
		spec.Config = filepath.Join(repoRoot(t), "configs", spec.Name+".yaml")
	}
	p, err := devstack.StartService(ctx, spec)
	if err != nil {
		dumpLogs(t, spec.LogDir)
		t.Fatalf("start %s %s: %v", spec.Name, what, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, spec.LogDir)
		}
		if err := p.Stop(10 * time.Second); err != nil {
			t.Errorf("stop %s: %v", spec.Name, err)
		}
	})
	return p
}

// portOf returns the port of a host:port address.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// passing returns the instances of name that Consul reports passing.
func passing(ctx context.Context, consul *api.Client, name string) ([]*api.ServiceEntry, error) {
	entries, _, err := consul.Health().Service(name, "", true, (&api.QueryOptions{}).WithContext(ctx))
	return entries, err
}

// dumpLogs writes the tail of every log under dir (instances and agent) to
// the test log.
func dumpLogs(t *testing.T, dir string) {
	t.Helper()
	for _, p := range devstack.Logs(dir) {
		t.Logf("--- %s (last %d lines) ---\n%s", p, logTailLines, devstack.LogTail(p, logTailLines))
	}
}

// sigtermExitsZero sends p SIGTERM and fails the test unless it exits 0
// within the drain delay plus 5 s; it returns how long the exit took.
// what says in which state it was stopped, for the failure.
func sigtermExitsZero(t *testing.T, p *devstack.ServiceProc, what string) time.Duration {
	t.Helper()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Wait(drainDelay + 5*time.Second); err != nil {
		t.Errorf("SIGTERM %s: %v, want exit 0", what, err)
	}
	return time.Since(start)
}
