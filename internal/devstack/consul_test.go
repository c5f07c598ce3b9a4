package devstack_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// newClient returns a Consul client for addr whose idle connections are
// closed at the end of the test, so goleak sees no stray goroutines.
func newClient(t *testing.T, addr string) *api.Client {
	t.Helper()
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = addr
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cfg.Transport.CloseIdleConnections)
	return c
}

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// processGone reports whether pid no longer exists (it has been reaped).
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestRepoRoot(t *testing.T) {
	root, err := devstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, statErr := os.Stat(filepath.Join(root, "go.mod")); statErr != nil {
		t.Fatalf("root %s has no go.mod: %v", root, statErr)
	}

	// From inside the tools/consul module the nested go.mod must be skipped.
	t.Chdir(filepath.Join(root, "tools", "consul"))
	got, err := devstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if got != root {
		t.Fatalf("RepoRoot from tools/consul = %s, want %s", got, root)
	}
}

func TestRepoRootOutsideRepo(t *testing.T) {
	t.Chdir(t.TempDir())
	if root, err := devstack.RepoRoot(); err == nil {
		t.Fatalf("RepoRoot outside the repo = %s, want an error", root)
	}
}

func TestEnsureConsulBinaryUsesExisting(t *testing.T) {
	// A fake repo whose bin/consul exists: nothing must be built.
	root := t.TempDir()
	bin := filepath.Join(root, "bin", "consul")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := devstack.EnsureConsulBinary(testContext(t, 5*time.Second), root)
	if err != nil {
		t.Fatal(err)
	}
	if got != bin {
		t.Fatalf("EnsureConsulBinary = %s, want %s", got, bin)
	}
}

func TestEnsureConsulBinaryBuilds(t *testing.T) {
	// A fake repo whose tools/consul module builds a tiny stand-in main
	// package under the real package path: the build path runs in seconds.
	root := t.TempDir()
	mod := filepath.Join(root, "tools", "consul")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"go.mod":  "module github.com/hashicorp/consul\n\ngo 1.22\n",
		"main.go": "package main\n\nfunc main() {}\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Two concurrent callers (as two test packages would be) share one build.
	ctx := testContext(t, 2*time.Minute)
	var wg sync.WaitGroup
	paths, errs := make([]string, 2), make([]error, 2)
	for i := range 2 {
		wg.Go(func() { paths[i], errs[i] = devstack.EnsureConsulBinary(ctx, root) })
	}
	wg.Wait()
	want := filepath.Join(root, "bin", "consul")
	for i := range 2 {
		if errs[i] != nil || paths[i] != want {
			t.Fatalf("caller %d: %s, %v; want %s", i, paths[i], errs[i], want)
		}
	}
	fi, err := os.Stat(want)
	if err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("built binary: %v, %v", fi, err)
	}
	left, _ := filepath.Glob(filepath.Join(root, "bin", "consul.tmp-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestStartConsul(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	start := time.Now()
	agent := devstacktest.Consul(t)
	t.Logf("agent %s ready at %s in %s", agent.NodeName(), agent.Addr(), time.Since(start).Round(time.Millisecond))

	c := newClient(t, agent.Addr())
	leader, err := c.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
	if err != nil || leader == "" {
		t.Fatalf("leader = %q, %v", leader, err)
	}
	node, _, err := c.Catalog().Node(agent.NodeName(), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil || node == nil || node.Node == nil {
		t.Fatalf("own node not in catalog: %v", err)
	}
	if agent.HTTPAddr() != "http://"+agent.Addr() {
		t.Errorf("HTTPAddr = %s", agent.HTTPAddr())
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, agent.UIURL(), nil)
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("UI: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("UI %s: %s", agent.UIURL(), resp.Status)
	}

	// Two agents side by side must not collide.
	other := devstacktest.Consul(t)
	if other.Addr() == agent.Addr() || other.NodeName() == agent.NodeName() {
		t.Fatalf("second agent shares address or node name: %s %s", other.Addr(), other.NodeName())
	}
}

func TestStopLeavesNothing(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	agent, err := devstack.StartConsul(ctx) // own temp dir, binary from the repo
	if err != nil {
		t.Fatal(err)
	}
	pid := devstack.ConsulPID(agent)
	dir := filepath.Dir(agent.LogPath())
	if pid == 0 {
		t.Fatal("no process")
	}
	start := time.Now()
	if err := agent.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("graceful stop took %s", time.Since(start).Round(time.Millisecond))
	if err := agent.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if !processGone(pid) {
		t.Errorf("process %d still exists after Stop", pid)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s not removed: %v", dir, err)
	}
	if err := agent.Restart(ctx); err == nil {
		t.Error("Restart after Stop succeeded, want an error")
	}
}

func TestRestartKeepsPortLosesState(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	agent := devstacktest.Consul(t)
	c := newClient(t, agent.Addr())
	if _, err := c.KV().Put(&api.KVPair{Key: "k", Value: []byte("v")}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	addr, pid := agent.Addr(), devstack.ConsulPID(agent)

	start := time.Now()
	if err := agent.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %s", time.Since(start).Round(time.Millisecond))
	if agent.Addr() != addr {
		t.Fatalf("address changed: %s -> %s", addr, agent.Addr())
	}
	if !processGone(pid) {
		t.Errorf("old process %d still exists", pid)
	}
	kv, _, err := c.KV().Get("k", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		t.Fatalf("same client after restart: %v", err)
	}
	if kv != nil {
		t.Errorf("KV survived the restart: %q", kv.Value)
	}
}

func TestKillThenRestart(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	agent := devstacktest.Consul(t)
	c := newClient(t, agent.Addr())
	pid := devstack.ConsulPID(agent)

	agent.Kill()
	agent.Kill() // idempotent
	if !processGone(pid) {
		t.Fatalf("process %d still exists after Kill", pid)
	}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	_, err := c.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(qctx))
	cancel()
	if err == nil {
		t.Fatal("agent answers after Kill")
	}

	if err := agent.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if leader, err := c.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx)); err != nil || leader == "" {
		t.Fatalf("after restart: leader %q, %v", leader, err)
	}
}

func TestStartConsulOnGivenPort(t *testing.T) {
	port := devstacktest.Port(t)
	agent := devstacktest.Consul(t, devstack.WithConsulHTTPPort(port))
	if want := "127.0.0.1:" + strconv.Itoa(port); agent.Addr() != want {
		t.Fatalf("Addr = %s, want %s", agent.Addr(), want)
	}

	// The port is taken now: a second agent on it must fail, not hang.
	ctx := testContext(t, time.Minute)
	if a2, err := devstack.StartConsul(ctx, devstack.WithConsulHTTPPort(port)); err == nil {
		_ = a2.Stop()
		t.Fatal("second agent on a taken port started")
	} else {
		t.Logf("second agent on a taken port: %.200s", err)
	}
}

func TestConsulFromEnv(t *testing.T) {
	agent := devstacktest.Consul(t)
	ctx := testContext(t, 30*time.Second)

	t.Setenv(api.HTTPAddrEnvName, "")
	if addr, ok := devstack.ConsulFromEnv(ctx); ok {
		t.Errorf("unset: got %s, want none", addr)
	}

	t.Setenv(api.HTTPAddrEnvName, agent.Addr())
	if addr, ok := devstack.ConsulFromEnv(ctx); !ok || addr != agent.Addr() {
		t.Errorf("running agent: got %q %v, want %s", addr, ok, agent.Addr())
	}

	t.Setenv(api.HTTPAddrEnvName, "127.0.0.1:"+strconv.Itoa(devstacktest.Port(t)))
	start := time.Now()
	if addr, ok := devstack.ConsulFromEnv(ctx); ok {
		t.Errorf("no agent: got %s", addr)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("probe of a dead address took %s", d)
	}
}
