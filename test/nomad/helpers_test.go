package nomad

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/cmd/devstack/demo"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/leakcheck"
)

// binDir holds the service binaries, built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rampart-nomad-bins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	defer func() { _ = os.RemoveAll(dir) }()
	leakcheck.Main(m)
}

var built struct {
	once sync.Once
	bins map[string]string
	err  error
}

// jobs lists the job specs under deploy/nomad; the suite runs every one,
// so a service added by `make new-service` is deployed and checked too.
func jobs(t *testing.T) []string {
	t.Helper()
	root, err := devstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	names, err := devstack.JobSpecs(root)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// bins builds the service of every job once per test binary.
func bins(t *testing.T) map[string]string {
	t.Helper()
	built.once.Do(func() {
		root, err := devstack.RepoRoot()
		if err != nil {
			built.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		jobs, err := devstack.JobSpecs(root)
		if err != nil {
			built.err = err
			return
		}
		built.bins, built.err = devstack.BuildServices(ctx, root, binDir, jobs...)
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bins
}

// startStack runs every job on fresh Consul and Nomad dev agents of the
// test's own, in mtls mode against an agent with ACLs on (a token per job),
// and stops everything in t.Cleanup, printing the agents' and tasks' logs
// first if the test failed.
func startStack(t *testing.T, ctx context.Context) *devstack.NomadStack {
	t.Helper()
	root, err := devstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(api.HTTPAddrEnvName, "") // never a developer's agent: the tests count instances
	workDir := t.TempDir()
	start := time.Now()
	s, err := devstack.StartNomadStack(ctx, devstack.NomadStackConfig{RepoRoot: root, WorkDir: workDir, Bins: bins(t), Security: devstack.SecurityMTLS})
	if err != nil {
		t.Fatalf("start nomad stack: %v\n--- nomad log ---\n%s", err, tailFile(filepath.Join(workDir, "nomad", "nomad.log"), 40))
	}
	t.Logf("2 allocations of each job passing in Consul %s after start", time.Since(start).Round(100*time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- nomad log ---\n%s", tailFile(s.Nomad.LogPath(), 40))
			for _, job := range jobs(t) {
				t.Logf("--- %s task logs ---\n%s", job, s.TaskLogTails(job, 20))
			}
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stop nomad stack: %v", err)
		}
	})
	return s
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// consulClient returns a client of the stack's Consul agent with its
// management token (ACLs are on: the anonymous token reads nothing).
func consulClient(t *testing.T, s *devstack.NomadStack) *api.Client {
	t.Helper()
	return devstacktest.TokenClient(t, s.Consul.Addr(), s.ManagementToken())
}

// dialDemo returns clients that reach both services through Consul with a
// certificate of devstack.ClientIdentity, which the stack's intentions
// allow to call every service.
func dialDemo(t *testing.T, ctx context.Context, consul *api.Client) *demo.Clients {
	t.Helper()
	src := devstacktest.CertSource(t, consul, devstack.ClientIdentity)
	return devstacktest.Demo(t, ctx, consul, demo.WithCertificates(src))
}

// call is one recorded call of a load run.
type call struct {
	start time.Time
	err   error
}

// steadyLoad calls fn rate times a second, each call in its own goroutine,
// until stop; the number of calls is bounded by rate x the run's length.
type steadyLoad struct {
	mu    sync.Mutex
	calls []call
	wg    sync.WaitGroup
	stop  chan struct{}
	done  chan struct{}
}

func startSteadyLoad(ctx context.Context, rate int, fn func(ctx context.Context, i int) error) *steadyLoad {
	l := &steadyLoad{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-l.stop:
				return
			case <-tick.C:
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				start := time.Now()
				err := fn(cctx, i)
				l.mu.Lock()
				l.calls = append(l.calls, call{start: start, err: err})
				l.mu.Unlock()
			}()
		}
	}()
	return l
}

// finish stops the load and returns every call once all have ended.
func (l *steadyLoad) finish() []call {
	close(l.stop)
	<-l.done
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.Slice(l.calls, func(i, j int) bool { return l.calls[i].start.Before(l.calls[j].start) })
	return l.calls
}

// report counts the failed calls and names the first few.
func report(t *testing.T, what string, cs []call) int {
	t.Helper()
	failed := 0
	byCode := map[codes.Code]int{}
	for _, c := range cs {
		if c.err != nil {
			failed++
			byCode[status.Code(c.err)]++
			if failed <= 5 {
				t.Logf("%s: failed call at %s: %v", what, c.start.Format("15:04:05.000"), c.err)
			}
		}
	}
	t.Logf("%s: %d calls, %d failed %v", what, len(cs), failed, byCode)
	return failed
}
