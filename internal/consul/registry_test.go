package consul_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/registry"
	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/leakcheck"
)

// Check timing used throughout: Consul's minimum interval, and a timeout
// short enough that a hung instance is caught within about 2 s.
const (
	checkInterval = time.Second
	checkTimeout  = time.Second
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// testLogger sends registry logs to the test log and keeps them, so tests
// can assert what was logged (e.g. once per outage).
type testLogger struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
}

func (l *testLogger) Log(level log.Level, keyvals ...any) error {
	var b strings.Builder
	b.WriteString(level.String())
	for i := 0; i+1 < len(keyvals); i += 2 {
		fmt.Fprintf(&b, " %v=%v", keyvals[i], keyvals[i+1])
	}
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	l.t.Log(b.String())
	return nil
}

// count returns how many log lines contain s.
func (l *testLogger) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// newRegistry returns a Registry on a client of addr, and its logger. Its
// cleanup closes the registry, then the client's idle connections.
func newRegistry(t *testing.T, addr string, opts ...consul.Option) (*consul.Registry, *api.Client, *testLogger) {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = addr
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cfg.Transport.CloseIdleConnections)
	logger := &testLogger{t: t}
	all := append([]consul.Option{
		consul.WithHealthCheck(checkInterval, checkTimeout, time.Minute),
		consul.WithLogger(logger),
		consul.WithRetryBackoff(50*time.Millisecond, time.Second),
		consul.WithTags("test"),
	}, opts...)
	r := consul.New(client, all...)
	t.Cleanup(func() { _ = r.Close() })
	return r, client, logger
}

// grpcServer is a real gRPC server with the standard health service.
type grpcServer struct {
	addr   string
	srv    *grpc.Server
	health *health.Server
}

func startGRPC(t *testing.T) *grpcServer {
	t.Helper()
	lis, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &grpcServer{addr: lis.Addr().String(), srv: grpc.NewServer(), health: health.NewServer()}
	healthpb.RegisterHealthServer(s.srv, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.srv.Serve(lis)
	}()
	t.Cleanup(func() {
		s.srv.Stop()
		<-done
	})
	return s
}

// startHung listens and accepts connections but never answers: a process
// that is alive and stuck. It counts the connections it accepted; the
// test's end closes them, which ends whatever waits on them.
func startHung(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	lis, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		n     atomic.Int64
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return lis.Addr().String(), &n
}

func newInstance(name, id, grpcAddr string) *registry.ServiceInstance {
	return &registry.ServiceInstance{
		ID:        id,
		Name:      name,
		Version:   "v1.2.3",
		Metadata:  map[string]string{"zone": "test-a", "weight": "10"},
		Endpoints: []string{"grpc://" + grpcAddr + "?isSecure=false", "http://127.0.0.1:8000?isSecure=false"},
	}
}

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// ids returns the instance IDs of a set, for messages and comparisons.
func ids(set []*registry.ServiceInstance) []string {
	out := make([]string, 0, len(set))
	for _, s := range set {
		out = append(out, s.ID)
	}
	slices.Sort(out)
	return out
}

// nextUntil calls w.Next until want(set) holds or timeout passes, and returns
// the matching set and every set seen on the way. On timeout the watcher is
// stopped (which unblocks Next) and the test fails.
func nextUntil(t *testing.T, w registry.Watcher, timeout time.Duration, what string, want func([]*registry.ServiceInstance) bool) (match []*registry.ServiceInstance, seen [][]*registry.ServiceInstance) {
	t.Helper()
	type result struct {
		set []*registry.ServiceInstance
		err error
	}
	deadline := time.After(timeout)
	for {
		ch := make(chan result, 1)
		go func() {
			set, err := w.Next()
			ch <- result{set, err}
		}()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("waiting for %s: Next: %v (seen %v)", what, r.err, seenIDs(seen))
			}
			seen = append(seen, r.set)
			if want(r.set) {
				return r.set, seen
			}
		case <-deadline:
			_ = w.Stop()
			<-ch
			t.Fatalf("no %s within %s (seen %v)", what, timeout, seenIDs(seen))
		}
	}
}

func seenIDs(seen [][]*registry.ServiceInstance) [][]string {
	out := make([][]string, 0, len(seen))
	for _, s := range seen {
		out = append(out, ids(s))
	}
	return out
}

func hasIDs(want ...string) func([]*registry.ServiceInstance) bool {
	slices.Sort(want)
	return func(set []*registry.ServiceInstance) bool { return slices.Equal(ids(set), want) }
}

// waitPassing polls GetService until the IDs of the passing set equal want,
// and returns how long that took.
func waitPassing(ctx context.Context, t *testing.T, r *consul.Registry, name string, timeout time.Duration, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	match := hasIDs(want...)
	var last []string
	var lastErr error
	for time.Since(start) < timeout {
		set, err := r.GetService(ctx, name)
		if err == nil && match(set) {
			return time.Since(start)
		}
		last, lastErr = ids(set), err
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("passing set of %s is not %v after %s: last %v, %v", name, want, timeout, last, lastErr)
	return 0
}

// passingAt polls GetService in the background from now on and reports the
// time the passing set of name first equals want. It measures events that
// happen while the caller is blocked (e.g. in Restart). The poller ends with
// the test.
func passingAt(t *testing.T, r *consul.Registry, name string, want ...string) <-chan time.Time {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	at := make(chan time.Time, 1)
	match := hasIDs(want...)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			qctx, qcancel := context.WithTimeout(ctx, time.Second)
			set, err := r.GetService(qctx, name)
			qcancel()
			if err == nil && match(set) {
				at <- time.Now()
				return
			}
			sleepCtx(ctx, 20*time.Millisecond)
		}
	}()
	return at
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// serviceChecks returns the agent's checks for one service ID.
func serviceChecks(t *testing.T, c *api.Client, id string) []*api.AgentCheck {
	t.Helper()
	all, err := c.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	var out []*api.AgentCheck
	for _, ch := range all {
		if ch.ServiceID == id {
			out = append(out, ch)
		}
	}
	return out
}

func TestRegisterGetServiceDeregister(t *testing.T) {
	agent := devstacktest.Consul(t)
	ctx := testContext(t, time.Minute)
	r, client, _ := newRegistry(t, agent.Addr())
	srv := startGRPC(t)
	ins := newInstance("user", "user-1", srv.addr)

	start := time.Now()
	if err := r.Register(ctx, ins); err != nil {
		t.Fatal(err)
	}
	waitPassing(ctx, t, r, "user", 5*time.Second, "user-1")
	t.Logf("TIMING new->discoverable: %s (Register call included)", time.Since(start).Round(time.Millisecond))

	set, err := r.GetService(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	got := set[0]
	if got.ID != ins.ID || got.Name != ins.Name || got.Version != ins.Version {
		t.Errorf("got %+v, want %+v", got, ins)
	}
	if !slices.Equal(got.Endpoints, ins.Endpoints) {
		t.Errorf("endpoints = %v, want %v", got.Endpoints, ins.Endpoints)
	}
	if !maps.Equal(got.Metadata, ins.Metadata) {
		t.Errorf("metadata = %v, want %v", got.Metadata, ins.Metadata)
	}

	svc, _, err := client.Agent().Service(ins.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(srv.addr)
	if svc.Address != host || strconv.Itoa(svc.Port) != port {
		t.Errorf("address = %s:%d, want %s", svc.Address, svc.Port, srv.addr)
	}
	for _, tag := range []string{"version=v1.2.3", "test"} {
		if !slices.Contains(svc.Tags, tag) {
			t.Errorf("tags %v lack %q", svc.Tags, tag)
		}
	}

	checks := serviceChecks(t, client, ins.ID)
	if len(checks) != 1 || checks[0].Type != "grpc" {
		t.Fatalf("want exactly one grpc check, got %+v", checks)
	}
	// The API omits the check's target and DeregisterCriticalServiceAfter;
	// interval and timeout are in the raw JSON, the target in the output.
	var raw map[string]struct{ ServiceID, Type, Interval, Timeout string }
	if _, err := client.Raw().Query("/v1/agent/checks", &raw, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	if c := raw[checks[0].CheckID]; c.Interval != checkInterval.String() || c.Timeout != checkTimeout.String() {
		t.Errorf("check interval/timeout = %s/%s, want %s/%s", c.Interval, c.Timeout, checkInterval, checkTimeout)
	}
	// The initial status is ours; wait for the agent's own probe to pass, so
	// we know the check really talks to the health service.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := serviceChecks(t, client, ins.ID)[0]
		if c.Status == api.HealthPassing && strings.Contains(c.Output, "gRPC check "+srv.addr+": success") {
			t.Logf("check output: %s", c.Output)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gRPC check has not run and passed: %+v", c)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := r.Deregister(ctx, ins); err != nil {
		t.Fatal(err)
	}
	if set, err := r.GetService(ctx, "user"); err != nil || len(set) != 0 {
		t.Fatalf("after deregister: %v, %v", ids(set), err)
	}
	if len(serviceChecks(t, client, ins.ID)) != 0 {
		t.Error("check left behind after deregister")
	}
	if err := r.Deregister(ctx, ins); err != nil {
		t.Errorf("second Deregister: %v", err)
	}
}

func TestRegisterRejectsBadInstances(t *testing.T) {
	ctx := testContext(t, 10*time.Second)
	// No agent is needed: these fail before any request.
	r, _, _ := newRegistry(t, "127.0.0.1:1")
	tests := []struct {
		name string
		ins  *registry.ServiceInstance
	}{
		{"nil", nil},
		{"no id", &registry.ServiceInstance{Name: "user", Endpoints: []string{"grpc://127.0.0.1:1"}}},
		{"no grpc endpoint", &registry.ServiceInstance{ID: "u1", Name: "user", Endpoints: []string{"http://127.0.0.1:1"}}},
		{"reserved version key", &registry.ServiceInstance{ID: "u1", Name: "user", Endpoints: []string{"grpc://127.0.0.1:1"}, Metadata: map[string]string{"version": "x"}}},
		{"reserved endpoint key", &registry.ServiceInstance{ID: "u1", Name: "user", Endpoints: []string{"grpc://127.0.0.1:1"}, Metadata: map[string]string{"endpoint-0": "x"}}},
		{"bad port", &registry.ServiceInstance{ID: "u1", Name: "user", Endpoints: []string{"grpc://127.0.0.1:http"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := r.Register(ctx, tt.ins); err == nil {
				t.Fatal("Register succeeded, want an error")
			} else {
				t.Log(err)
			}
		})
	}
}

func TestRegisterRejectedByConsul(t *testing.T) {
	agent := devstacktest.Consul(t)
	ctx := testContext(t, 30*time.Second)
	r, _, _ := newRegistry(t, agent.Addr())
	srv := startGRPC(t)
	ins := newInstance("user", "user-1", srv.addr)
	ins.Metadata["bad key!"] = "x" // Consul allows only [A-Za-z0-9_-] in meta keys
	if err := r.Register(ctx, ins); err == nil {
		t.Fatal("Register succeeded, want Consul's 400")
	} else {
		t.Log(err)
	}
}

func TestWatchLifecycle(t *testing.T) {
	agent := devstacktest.Consul(t)
	ctx := testContext(t, 2*time.Minute)
	r, _, _ := newRegistry(t, agent.Addr())

	w, err := r.Watch(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()

	// The first Next delivers the first answer even when it is empty.
	nextUntil(t, w, 5*time.Second, "initial empty set", hasIDs())

	srvA, srvB := startGRPC(t), startGRPC(t)
	a, b := newInstance("user", "user-a", srvA.addr), newInstance("user", "user-b", srvB.addr)
	start := time.Now()
	if err := r.Register(ctx, a); err != nil {
		t.Fatal(err)
	}
	set, _ := nextUntil(t, w, 5*time.Second, "user-a", hasIDs("user-a"))
	t.Logf("TIMING new->watcher: %s", time.Since(start).Round(time.Millisecond))
	if !slices.Equal(set[0].Endpoints, a.Endpoints) || !maps.Equal(set[0].Metadata, a.Metadata) || set[0].Version != a.Version {
		t.Errorf("watched instance = %+v, want %+v", set[0], a)
	}

	if err := r.Register(ctx, b); err != nil {
		t.Fatal(err)
	}
	nextUntil(t, w, 5*time.Second, "user-a and user-b", hasIDs("user-a", "user-b"))
	// Let B's check run for real once before killing it.
	time.Sleep(checkInterval + 200*time.Millisecond)

	// Hard stop: B's process is gone, its port refuses connections.
	srvB.srv.Stop()
	start = time.Now()
	nextUntil(t, w, 10*time.Second, "user-b gone", hasIDs("user-a"))
	crash := time.Since(start)
	t.Logf("TIMING crash->gone: %s (target <= 2s)", crash.Round(time.Millisecond))
	if crash > 3*time.Second {
		t.Errorf("crashed instance left the passing set after %s, want <= ~2s", crash)
	}

	// Scale to zero: the watcher must deliver the empty set.
	start = time.Now()
	if err := r.Deregister(ctx, a); err != nil {
		t.Fatal(err)
	}
	nextUntil(t, w, 5*time.Second, "empty set", hasIDs())
	t.Logf("TIMING deregister->watcher empty: %s", time.Since(start).Round(time.Millisecond))
	if err := r.Deregister(ctx, b); err != nil {
		t.Fatal(err)
	}
}

func TestNotServingLeaves(t *testing.T) {
	agent := devstacktest.Consul(t)
	ctx := testContext(t, time.Minute)
	r, _, _ := newRegistry(t, agent.Addr())
	srv := startGRPC(t)
	if err := r.Register(ctx, newInstance("user", "user-1", srv.addr)); err != nil {
		t.Fatal(err)
	}
	w, err := r.Watch(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	nextUntil(t, w, 5*time.Second, "user-1", hasIDs("user-1"))

	srv.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	start := time.Now()
	nextUntil(t, w, 10*time.Second, "user-1 gone", hasIDs())
	took := time.Since(start)
	t.Logf("TIMING NOT_SERVING->gone: %s (target <= 2s)", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("NOT_SERVING instance left after %s, want <= ~2s", took)
	}

	// And back: SERVING again makes it passing again.
	srv.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	start = time.Now()
	nextUntil(t, w, 10*time.Second, "user-1 back", hasIDs("user-1"))
	t.Logf("TIMING SERVING->back: %s", time.Since(start).Round(time.Millisecond))
}

// TestHTTPCheck: with WithHTTPCheck, Consul checks the readiness path at
// the address in the instance's metadata instead of its gRPC port (which,
// under mTLS, the agent could not handshake with), and the instance leaves
// the passing set when the path stops answering 200. An instance without
// that metadata is refused.
func TestHTTPCheck(t *testing.T) {
	agent := devstacktest.Consul(t)
	ctx := testContext(t, time.Minute)
	r, client, _ := newRegistry(t, agent.Addr(), consul.WithHTTPCheck("http", "/readyz"))
	var ready atomic.Bool
	ready.Store(true)
	probe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/readyz" || !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(probe.Close)
	// A TLS port, as Kratos 2.9 writes it; nothing listens there, so a
	// check that went to it would fail.
	ins := newInstance("user", "user-1", "127.0.0.1:1")
	ins.Endpoints = []string{"grpcs://127.0.0.1:1?isSecure=true"}
	if err := r.Register(ctx, ins); err == nil || !strings.Contains(err.Error(), `no metadata "http"`) {
		t.Fatalf("Register without the metadata = %v, want an error naming it", err)
	}
	ins.Metadata["http"] = strings.TrimPrefix(probe.URL, "http://")
	if err := r.Register(ctx, ins); err != nil {
		t.Fatal(err)
	}
	checks, _, err := client.Health().Checks("user", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil || len(checks) != 1 || checks[0].Type != "http" {
		t.Fatalf("checks of user = %v, %v; want one of type http", checks, err)
	}
	if svc, _, serr := client.Agent().Service("user-1", nil); serr != nil || svc.Port != 1 {
		t.Fatalf("registered %+v, %v; want port 1 of the grpcs:// endpoint", svc, serr)
	}
	w, err := r.Watch(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	// Registered passing, and the first probes (every second) keep it so.
	nextUntil(t, w, 5*time.Second, "user-1", hasIDs("user-1"))
	time.Sleep(2 * checkInterval)
	if entries, err := passingEntries(ctx, client, "user"); err != nil || len(entries) != 1 {
		t.Fatalf("passing after two probes: %d, %v; want 1", len(entries), err)
	}
	ready.Store(false)
	start := time.Now()
	nextUntil(t, w, 10*time.Second, "user-1 gone", hasIDs())
	t.Logf("TIMING /readyz 503 -> gone: %s", time.Since(start).Round(time.Millisecond))
}

// passingEntries are the passing instances of name.
func passingEntries(ctx context.Context, client *api.Client, name string) ([]*api.ServiceEntry, error) {
	entries, _, err := client.Health().Service(name, "", true, (&api.QueryOptions{}).WithContext(ctx))
	return entries, err
}

func TestHungInstanceLeaves(t *testing.T) {
	agent := devstacktest.Consul(t)
	ctx := testContext(t, time.Minute)
	r, _, _ := newRegistry(t, agent.Addr())
	hung, _ := startHung(t)
	ins := newInstance("user", "user-hung", hung)

	w, err := r.Watch(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	nextUntil(t, w, 5*time.Second, "initial empty set", hasIDs())
	start := time.Now()
	if err := r.Register(ctx, ins); err != nil {
		t.Fatal(err)
	}
	// It starts passing (we register once the server "listens") and must
	// fall out once the first probe times out.
	nextUntil(t, w, 5*time.Second, "user-hung", hasIDs("user-hung"))
	nextUntil(t, w, 10*time.Second, "user-hung gone", hasIDs())
	took := time.Since(start)
	t.Logf("TIMING hung->gone: %s after registration (interval %s, timeout %s; target <= 3s)", took.Round(time.Millisecond), checkInterval, checkTimeout)
	if took > 4*time.Second {
		t.Errorf("hung instance left after %s, want <= ~3s", took)
	}
}

// TestLastKnownOutlivesTheWatcher: a gRPC channel that goes idle stops its
// watcher, and its next call builds a new one. If Consul is gone by then,
// the new watcher still delivers the set the last one did, at once.
func TestLastKnownOutlivesTheWatcher(t *testing.T) {
	agent := devstacktest.Consul(t)
	ctx := testContext(t, time.Minute)
	r, _, _ := newRegistry(t, agent.Addr())
	srv := startGRPC(t)
	if err := r.Register(ctx, newInstance("user", "user-a", srv.addr)); err != nil {
		t.Fatal(err)
	}
	first, err := r.Watch(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	nextUntil(t, first, 10*time.Second, "user-a", hasIDs("user-a"))
	if err = first.Stop(); err != nil {
		t.Fatal(err)
	}
	if err = agent.Stop(); err != nil {
		t.Fatal(err)
	}

	again, err := r.Watch(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = again.Stop() }()
	nextUntil(t, again, time.Second, "the last known set with Consul gone", hasIDs("user-a"))
}

func TestWatchStop(t *testing.T) {
	agent := devstacktest.Consul(t)
	ctx := testContext(t, 30*time.Second)
	r, _, _ := newRegistry(t, agent.Addr())
	w, err := r.Watch(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	nextUntil(t, w, 5*time.Second, "initial empty set", hasIDs())

	errc := make(chan error, 1)
	go func() {
		_, nextErr := w.Next() // blocks: nothing changes
		errc <- nextErr
	}()
	time.Sleep(200 * time.Millisecond)
	if stopErr := w.Stop(); stopErr != nil {
		t.Fatal(stopErr)
	}
	select {
	case nextErr := <-errc:
		if !errors.Is(nextErr, context.Canceled) {
			t.Errorf("Next after Stop = %v, want context.Canceled", nextErr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not unblock Next")
	}
	if stopErr := w.Stop(); stopErr != nil {
		t.Errorf("second Stop: %v", stopErr)
	}

	// Cancelling the watch context ends the watcher too.
	wctx, cancel := context.WithCancel(ctx)
	w2, err := r.Watch(wctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w2.Stop() }()
	cancel()
	if _, err := w2.Next(); !errors.Is(err, context.Canceled) {
		t.Errorf("Next after cancel = %v, want context.Canceled", err)
	}

	// After Close, Watch and Register refuse.
	_ = r.Close()
	if _, err := r.Watch(ctx, "user"); err == nil {
		t.Error("Watch after Close succeeded")
	}
}

func TestConsulDownAtStart(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	port := devstacktest.Port(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	r, _, logs := newRegistry(t, addr)
	srv := startGRPC(t)

	start := time.Now()
	if err := r.Register(ctx, newInstance("user", "user-1", srv.addr)); err != nil {
		t.Fatalf("Register with Consul down = %v, want nil", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Register with Consul down took %s", d)
	}
	if _, err := r.GetService(ctx, "user"); err == nil {
		t.Error("GetService with Consul down succeeded")
	}
	w, err := r.Watch(ctx, "user")
	if err != nil {
		t.Fatalf("Watch with Consul down = %v, want nil", err)
	}
	defer func() { _ = w.Stop() }()

	// Several retries happen while Consul is down; each outage is logged once.
	time.Sleep(1500 * time.Millisecond)
	if n := logs.count("retrying in background"); n != 1 {
		t.Errorf("registrar logged the outage %d times, want 1", n)
	}
	if n := logs.count("consul: watch user:"); n != 1 {
		t.Errorf("watcher logged the outage %d times, want 1", n)
	}

	agentStart := time.Now()
	passing := passingAt(t, r, "user", "user-1")
	agent := devstacktest.Consul(t, devstack.WithConsulHTTPPort(port))
	ready := time.Since(agentStart)
	select {
	case at := <-passing:
		t.Logf("TIMING consul-up->registered+passing: %s from the agent's start (devstack called it ready after %s)",
			at.Sub(agentStart).Round(time.Millisecond), ready.Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("instance not passing 10s after the agent became ready")
	}
	nextUntil(t, w, 10*time.Second, "user-1 via the watcher", hasIDs("user-1"))

	// Registered in the background: if Consul now goes away, the instance
	// it still lists makes a failed deregistration an error.
	if err = agent.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.Deregister(ctx, newInstance("user", "user-1", srv.addr)); err == nil {
		t.Error("Deregister with Consul gone after a background registration = nil, want an error")
	}
}

func TestAgentRestart(t *testing.T) {
	agent := devstacktest.Consul(t)
	ctx := testContext(t, 2*time.Minute)
	r, _, _ := newRegistry(t, agent.Addr())
	srvA := startGRPC(t)
	if err := r.Register(ctx, newInstance("user", "user-a", srvA.addr)); err != nil {
		t.Fatal(err)
	}
	w, err := r.Watch(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	nextUntil(t, w, 5*time.Second, "user-a", hasIDs("user-a"))

	// Every set the watcher delivers from now on is recorded.
	type result struct {
		set []*registry.ServiceInstance
		err error
	}
	results := make(chan result, 16)
	go func() {
		for {
			set, err := w.Next()
			results <- result{set, err}
			if err != nil {
				return
			}
		}
	}()

	// A crash, a second of outage, then a fresh agent on the same port.
	agent.Kill()
	time.Sleep(time.Second)
	restart := time.Now()
	passing := passingAt(t, r, "user", "user-a")
	if err := agent.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(restart)
	select {
	case at := <-passing:
		took := at.Sub(restart)
		t.Logf("TIMING agent-restart->re-registered+passing: %s from the start of Restart (devstack called it ready after %s)",
			took.Round(time.Millisecond), ready.Round(time.Millisecond))
		if took > 5*time.Second {
			t.Errorf("re-registration took %s, want <= 5s", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("instance not passing 10s after the restarted agent became ready")
	}

	// The same set is no change, so the watcher must have delivered nothing
	// so far; in particular not the empty set.
	select {
	case res := <-results:
		t.Fatalf("watcher delivered %v (err %v) across the restart, want nothing", ids(res.set), res.err)
	default:
	}
	// It follows the new agent: a second instance shows up.
	srvB := startGRPC(t)
	if err := r.Register(ctx, newInstance("user", "user-b", srvB.addr)); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-results:
		if res.err != nil || !hasIDs("user-a", "user-b")(res.set) {
			t.Fatalf("after restart the watcher delivered %v, %v; want [user-a user-b]", ids(res.set), res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watcher did not see user-b after the restart")
	}
	_ = w.Stop()
	for res := range results {
		if res.err != nil {
			break
		}
	}
}

// TestDeregisterNeverRegistered stops an instance whose registration never
// succeeded, Consul being down throughout: there is nothing to remove, so
// no error, and the log says so at info.
func TestDeregisterNeverRegistered(t *testing.T) {
	ctx := testContext(t, time.Minute)
	r, _, logs := newRegistry(t, "127.0.0.1:"+strconv.Itoa(devstacktest.Port(t)))
	ins := newInstance("user", "user-1", "127.0.0.1:1")
	if err := r.Register(ctx, ins); err != nil {
		t.Fatalf("Register with Consul down = %v, want nil", err)
	}
	if err := r.Deregister(ctx, ins); err != nil {
		t.Fatalf("Deregister of an instance never registered = %v, want nil", err)
	}
	if n := logs.count("INFO msg=consul: user-1 was never registered, nothing to deregister"); n != 1 {
		t.Errorf("logged %d info lines saying it was never registered, want 1", n)
	}
}

// TestDeregisterFailsOnceRegistered is the other side: an instance that was
// registered and cannot be removed because Consul went away is an error.
func TestDeregisterFailsOnceRegistered(t *testing.T) {
	agent := devstacktest.Consul(t)
	ctx := testContext(t, time.Minute)
	r, _, logs := newRegistry(t, agent.Addr())
	srv := startGRPC(t)
	ins := newInstance("user", "user-1", srv.addr)
	if err := r.Register(ctx, ins); err != nil {
		t.Fatal(err)
	}
	if err := agent.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.Deregister(ctx, ins); err == nil {
		t.Fatal("Deregister with Consul gone = nil, want an error")
	}
	if n := logs.count("never registered"); n != 0 {
		t.Errorf("a registered instance was logged as never registered")
	}
}
