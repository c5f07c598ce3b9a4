package devstack_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

func TestPortRanges(t *testing.T) {
	span := devstack.NewPortSpan
	cases := []struct {
		name         string
		ephLo, ephHi int
		want         []devstack.PortSpan
	}{
		{"Linux default leaves the preferred range whole", 32768, 60999, []devstack.PortSpan{span(10000, 19999)}},
		{"an ephemeral range inside it cuts a hole", 12000, 15000, []devstack.PortSpan{span(10000, 11999), span(15001, 19999)}},
		{
			"too little left: everything outside ephemeral and Nomad's dynamic range", 10500, 65535,
			[]devstack.PortSpan{span(1024, 10499)},
		},
		{"nothing left: the kernel chooses", 1024, 65535, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := devstack.PortRanges(c.ephLo, c.ephHi); !slices.Equal(got, c.want) {
				t.Errorf("portRanges(%d, %d) = %v, want %v", c.ephLo, c.ephHi, got, c.want)
			}
		})
	}
}

// Leased ports are never ephemeral ones, never handed out twice while held
// (also to a concurrent picker), and free again once released.
func TestLeasePortsOutsideTheEphemeralRangeAndExclusive(t *testing.T) {
	lo, hi := devstack.EphemeralRange()
	var (
		mu    sync.Mutex
		seen  = map[int]bool{}
		wg    sync.WaitGroup
		dupes []int
	)
	leases := make(chan interface {
		Ports() []int
		Release()
	}, 8)
	for range 8 {
		wg.Go(func() {
			l, err := devstack.LeasePorts(25)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			for _, p := range l.Ports() {
				if seen[p] {
					dupes = append(dupes, p)
				}
				seen[p] = true
			}
			mu.Unlock()
			leases <- l
		})
	}
	wg.Wait()
	close(leases)
	if len(dupes) > 0 {
		t.Errorf("ports handed out twice while held: %v", dupes)
	}
	if len(seen) != 200 {
		t.Errorf("%d distinct ports for 8 leases of 25", len(seen))
	}
	for p := range seen {
		if p >= lo && p <= hi {
			t.Errorf("port %d is in the kernel's ephemeral range %d-%d", p, lo, hi)
		}
	}
	// While held, another picker (here a lease in this process; across
	// processes the flock is the same) cannot take any of them.
	lockDir := filepath.Join(os.TempDir(), "rampart-ports")
	for p := range seen {
		f, err := os.OpenFile(filepath.Join(lockDir, strconv.Itoa(p)), os.O_RDWR, 0)
		if err != nil {
			t.Fatalf("no lock file for leased port %d: %v", p, err)
		}
		if devstack.TryLock(f) {
			t.Errorf("port %d's lock could be taken while its lease holds it", p)
		}
		_ = f.Close()
	}
	for l := range leases {
		l.Release()
	}
	// Released, the lock files are free to take again.
	for p := range seen {
		f, err := os.OpenFile(filepath.Join(lockDir, strconv.Itoa(p)), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !devstack.TryLock(f) {
			t.Errorf("port %d still locked after release", p)
		}
		_ = f.Close()
	}
}

// occupy binds TCP and UDP on port as an outside process would, until the
// test ends.
func occupy(t *testing.T, port int) {
	t.Helper()
	var lc net.ListenConfig
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("occupy %d: %v", port, err)
	}
	u, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		t.Fatalf("occupy %d: %v", port, err)
	}
	t.Cleanup(func() { _ = l.Close(); _ = u.Close() })
}

// stealFirstLease makes the first lease lose its port at index i to an
// outside listener between the pick and the child's bind.
func stealFirstLease(t *testing.T, i int) *int {
	t.Helper()
	stolen := new(int)
	var once sync.Once
	restore := devstack.SetAfterLease(func(ports []int) {
		once.Do(func() {
			*stolen = ports[i]
			occupy(t, ports[i])
		})
	})
	t.Cleanup(restore)
	return stolen
}

// A Consul agent whose Serf port is taken between the pick and its bind
// exits at start; StartConsul starts it again on fresh ports, keeping the
// HTTP port the caller fixed.
func TestStartConsulRetriesABindCollision(t *testing.T) {
	httpPort := devstacktest.Port(t)
	stolen := stealFirstLease(t, 1) // serf LAN: the port of the CI failure
	agent := devstacktest.Consul(t, devstack.WithConsulHTTPPort(httpPort))
	if *stolen == 0 {
		t.Fatal("the hook never ran")
	}
	if n := devstack.ConsulStarts(agent); n != 2 {
		t.Errorf("agent started %d times, want 2 (one collision, one retry)", n)
	}
	if agent.Addr() != net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)) {
		t.Errorf("agent on %s, want the fixed port %d", agent.Addr(), httpPort)
	}
	log, err := os.ReadFile(agent.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "address already in use") {
		t.Error("the first start did not fail on the taken port: the test proved nothing")
	}
}

// A service instance whose gRPC port is taken keeps retrying its bind; the
// launcher sees the bind error in its log and starts it on fresh ports.
func TestStartServiceRetriesABindCollision(t *testing.T) {
	root, err := devstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Any service would do; user starts without a peer to dial.
	const name = "user"
	ctx := devstacktest.Context(t, 3*time.Minute)
	dir := t.TempDir()
	bins, err := devstack.BuildServices(ctx, root, dir, name)
	if err != nil {
		t.Fatal(err)
	}
	noConsul := net.JoinHostPort("127.0.0.1", strconv.Itoa(devstacktest.Port(t))) // /healthz needs no agent
	stolen := stealFirstLease(t, 0)
	p, err := devstack.StartService(ctx, devstack.ServiceSpec{
		Name:       name,
		Binary:     bins[name],
		Config:     filepath.Join(root, "configs", name+".yaml"),
		ConsulAddr: noConsul,
		Env:        []string{"RAMPART_SQLITE_PATH=" + filepath.Join(dir, name+".db")},
		LogDir:     dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Stop(10 * time.Second) }()
	if *stolen == 0 {
		t.Fatal("the hook never ran")
	}
	if p.GRPCAddr == net.JoinHostPort("127.0.0.1", strconv.Itoa(*stolen)) {
		t.Errorf("instance serves on the stolen port %d", *stolen)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, name+"-*.log"))
	collided := false
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		collided = collided || strings.Contains(string(b), "address already in use")
	}
	if len(logs) != 2 || !collided {
		t.Errorf("%d instance logs, bind error logged: %v; want 2 (the collision, then the retry)", len(logs), collided)
	}
}

// A PostgreSQL server whose port is taken between the pick and its bind
// exits at start; StartPostgres starts it again on a fresh port.
func TestStartPostgresRetriesABindCollision(t *testing.T) {
	ctx := devstacktest.Context(t, 2*time.Minute)
	stolen := stealFirstLease(t, 0)
	pg, err := devstack.StartPostgres(ctx, devstack.WithPostgresLogDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg.Stop() }()
	if *stolen == 0 {
		t.Fatal("the hook never ran")
	}
	if pg.Addr() == net.JoinHostPort("127.0.0.1", strconv.Itoa(*stolen)) {
		t.Errorf("server on the stolen port %d", *stolen)
	}
	log, err := os.ReadFile(pg.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.ToLower(string(log)), "address already in use") {
		t.Error("the first start did not fail on the taken port: the test proved nothing")
	}
}
