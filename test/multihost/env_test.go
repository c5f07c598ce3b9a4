package multihost_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
	"github.com/go-kratos/kratos/v2/log"
	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/mtls"
	"github.com/rampart-go/rampart/internal/server"
	"github.com/rampart-go/rampart/test/multihost"
)

const (
	consulHTTP = 8500
	pgPort     = 5432
	// toxiproxyAPI is the port of toxiproxy-server's API on a and db.
	toxiproxyAPI = 8474
	// proxyOffset is added to a port for the toxiproxy listener in front
	// of it: a's gRPC ports, db's PostgreSQL.
	proxyOffset = 10000
	// driverIdentity is the load driver's service identity in mtls: the
	// intentions let it call both services.
	driverIdentity = "mh-driver"
	// logTailLines is how much of each log a failed run prints.
	logTailLines = 40
)

// servicePorts are each service's fixed ports on its host: gRPC, side
// HTTP, gateway.
var servicePorts = map[string][3]int{"user": {9001, 9101, 9201}, "order": {9002, 9102, 9202}}

// serviceHosts run one instance of each service.
var serviceHosts = []multihost.Host{multihost.A, multihost.B}

// agent is one Consul agent process on a host.
type agent struct {
	host    multihost.Host
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

// startAgent starts the Consul server (on ctl) or a client agent joined to
// it (on the other hosts), not in dev mode: state on disk, Connect on.
func startAgent(t *testing.T, h multihost.Host, server bool) *agent {
	t.Helper()
	dir := t.TempDir()
	args := []string{
		"agent", "-node", h.Name, "-data-dir", filepath.Join(dir, "data"),
		"-bind", h.IP, "-client", "127.0.0.1 " + h.IP,
		"-http-port", strconv.Itoa(consulHTTP), "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-hcl", "disable_update_check = true", "-log-level", "info",
	}
	if server {
		args = append(args, "-server", "-bootstrap-expect", "1", "-hcl", "connect { enabled = true }",
			// A test cluster on one machine: elect and detect at the pace
			// of a production one's best case, not its default (5x slower).
			"-hcl", "performance { raft_multiplier = 1 }")
	} else {
		args = append(args, "-retry-join", multihost.Ctl.IP, "-retry-interval", "1s")
	}
	a := &agent{host: h, logPath: filepath.Join(dir, "consul.log"), exited: make(chan struct{})}
	logF, err := os.Create(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd = exec.Command(binary("consul"), args...) //nolint:noctx // stopped in cleanup
	a.cmd.Stdout, a.cmd.Stderr = logF, logF
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := h.Start(a.cmd); err != nil {
		_ = logF.Close()
		t.Fatalf("consul on %s: %v", h.Name, err)
	}
	go func() {
		_ = a.cmd.Wait()
		_ = logF.Close()
		close(a.exited)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- consul on %s (last %d lines) ---\n%s", h.Name, logTailLines, devstack.LogTail(a.logPath, logTailLines))
		}
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
			<-a.exited
		}
	})
	return a
}

// client is a Consul client of the agent on h, reached over the test
// network (the driver runs on ctl).
func (a *agent) client(t *testing.T) *api.Client {
	t.Helper()
	return devstacktest.ConsulClient(t, a.host.Addr(consulHTTP))
}

// world is everything the scenarios share: built once, healed after each.
type world struct {
	server    *agent
	agents    map[string]*agent // by host name
	consul    *api.Client       // the server's
	pg        *devstack.Postgres
	dsn       string
	instances map[string]map[string]*devstack.ServiceProc // host -> service -> instance
	proxies   map[string]*toxiproxy.Proxy                 // by name: user and order on a, pg on db
	clients   middleware.ClientConfigs                    // the driver's client chains
	src       mtls.Source                                 // the driver's certificate
	buyer     string                                      // the user whose profile the load reads
	logDir    string
}

// build starts Consul (server on ctl, agents on a and b), writes the
// intentions, starts PostgreSQL on db and the instances on a and b, and
// dials the driver's clients.
func build(t *testing.T, ctx context.Context) *world {
	t.Helper()
	root, err := devstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{agents: map[string]*agent{}, instances: map[string]map[string]*devstack.ServiceProc{}, logDir: t.TempDir()}
	begin := time.Now()
	w.server = startAgent(t, multihost.Ctl, true)
	for _, h := range serviceHosts {
		w.agents[h.Name] = startAgent(t, h, false)
	}
	w.consul = w.server.client(t)
	waitFor(t, ctx, "a Consul leader with Connect's CA roots", time.Minute, func() error {
		leader, lerr := w.consul.Status().Leader()
		if lerr != nil || leader == "" {
			return fmt.Errorf("leader %q: %w", leader, lerr)
		}
		roots, _, rerr := w.consul.Connect().CARoots(nil)
		if rerr != nil || len(roots.Roots) == 0 {
			return fmt.Errorf("no CA roots yet: %w", rerr)
		}
		return nil
	})
	waitFor(t, ctx, "the agents of a and b in the cluster", time.Minute, func() error { return membersAlive(w.consul, "a", "b") })
	t.Logf("consul: server on ctl, agents on a and b, in %s", time.Since(begin).Round(time.Millisecond))

	// Default deny, then the allows the demo and the driver need.
	if _, err = w.consul.Connect().IntentionUpsert(&api.Intention{ //nolint:staticcheck // the config-entry form is longer and does the same
		SourceName: "*", DestinationName: "*", Action: api.IntentionActionDeny, Description: "multihost: default deny",
	}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"user", "order"} {
		callees, cerr := devstack.Callees(filepath.Join(root, "configs", svc+".yaml"))
		if cerr != nil {
			t.Fatal(cerr)
		}
		for _, callee := range callees {
			if err = devstack.AllowIntention(ctx, w.consul, svc, callee); err != nil {
				t.Fatal(err)
			}
		}
		if err = devstack.AllowIntention(ctx, w.consul, driverIdentity, svc); err != nil {
			t.Fatal(err)
		}
	}

	begin = time.Now()
	w.pg, err = devstack.StartPostgres(ctx,
		devstack.WithPostgresListen(multihost.DB.IP, pgPort),
		devstack.WithPostgresTrustNet(multihost.Subnet),
		devstack.WithPostgresStarter(multihost.DB.Start),
		devstack.WithPostgresLogDir(w.logDir),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- postgres on db (last %d lines) ---\n%s", logTailLines, devstack.LogTail(w.pg.LogPath(), logTailLines))
		}
		if serr := w.pg.Stop(); serr != nil {
			t.Errorf("stop postgres: %v", serr)
		}
	})
	w.dsn = devstacktest.PostgresDatabase(t, w.pg.DSN("postgres"))
	t.Logf("postgres on db in %s", time.Since(begin).Round(time.Millisecond))

	// Latency comes from toxiproxy: on db in front of PostgreSQL (the
	// services' DATABASE_URL points at it; the test counts orders
	// directly), on a in front of each instance's gRPC port, which the
	// instance advertises (server.grpc.advertise), so every call to a
	// passes through it.
	w.proxies = map[string]*toxiproxy.Proxy{}
	tpDB, tpA := startToxiproxy(t, ctx, multihost.DB), startToxiproxy(t, ctx, multihost.A)
	w.proxies["pg"] = createProxy(t, tpDB, "pg", multihost.DB, pgPort)
	for _, svc := range []string{"user", "order"} {
		w.proxies[svc] = createProxy(t, tpA, svc, multihost.A, servicePorts[svc][0])
	}
	serviceDSN := strings.Replace(w.dsn, multihost.DB.Addr(pgPort), multihost.DB.Addr(pgPort+proxyOffset), 1)

	begin = time.Now()
	for _, h := range serviceHosts {
		w.instances[h.Name] = map[string]*devstack.ServiceProc{}
		for _, svc := range []string{"user", "order"} {
			w.instances[h.Name][svc] = w.startInstance(t, ctx, root, h, svc, serviceDSN)
		}
	}
	for _, svc := range []string{"user", "order"} {
		if _, err = devstack.WaitPassing(ctx, w.consul, svc, len(serviceHosts)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("user and order on a and b passing in %s", time.Since(begin).Round(time.Millisecond))

	c, err := conf.Load(filepath.Join(root, "configs", "order.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	template := c.Clients["user"]
	orderClient := template
	orderClient.Target = "discovery:///order"
	w.clients = middleware.ClientConfigs{"user": template, "order": orderClient}
	server.Setup()
	w.src = devstacktest.CertSource(t, w.consul, driverIdentity)
	user, _ := w.dialDriver(t)
	w.buyer = w.newBuyer(t, ctx, user)
	return w
}

// startInstance starts svc on h, on its fixed ports, registered with h's
// agent, on the database at dsn.
func (w *world) startInstance(t *testing.T, ctx context.Context, root string, h multihost.Host, svc, dsn string) *devstack.ServiceProc {
	t.Helper()
	ports := servicePorts[svc]
	env := []string{"RAMPART_DATA_DRIVER=postgres", "DATABASE_URL=" + dsn}
	if h == multihost.A {
		env = append(env, conf.EnvAdvertise+"="+h.Addr(ports[0]+proxyOffset))
	}
	logDir := filepath.Join(w.logDir, h.Name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := devstack.StartService(ctx, devstack.ServiceSpec{
		Name:       svc,
		Binary:     binary(svc),
		Config:     filepath.Join(root, "configs", svc+".yaml"),
		ConsulAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(consulHTTP)),
		Env:        env,
		LogDir:     logDir,
		Addrs:      &devstack.ServiceAddrs{GRPC: h.Addr(ports[0]), HTTP: h.Addr(ports[1]), Gateway: h.Addr(ports[2])},
		Start:      h.Start,
	})
	if err != nil {
		t.Fatalf("%s on %s: %v", svc, h.Name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- %s on %s (last %d lines) ---\n%s", svc, h.Name, logTailLines, devstack.LogTail(p.LogPath, logTailLines))
		}
		if err := p.Stop(15 * time.Second); err != nil {
			t.Errorf("stop %s on %s: %v", svc, h.Name, err)
		}
	})
	return p
}

// dialDriver dials both services the way a Rampart service would from
// ctl: discovery through ctl's agent, the client chain of
// configs/order.yaml's clients.user (for order too), mutual TLS with a
// certificate of driverIdentity. Each scenario dials afresh, so that no
// ejection or breaker state of one carries into the next; the
// connections close when t ends.
func (w *world) dialDriver(t *testing.T) (userv1.UserServiceClient, orderv1.OrderServiceClient) {
	t.Helper()
	reg := consul.New(w.consul)
	t.Cleanup(func() { _ = reg.Close() })
	dialer := server.NewDialer(reg, middleware.NewClients(w.clients, log.NewStdLogger(io.Discard), nil), w.src)
	dial := func(name string) *grpc.ClientConn {
		conn, closeConn, err := dialer.Dial(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(closeConn)
		return conn
	}
	return userv1.NewUserServiceClient(dial("user")), orderv1.NewOrderServiceClient(dial("order"))
}

// startToxiproxy runs toxiproxy-server on h, its API on h's address, and
// returns a client of it.
func startToxiproxy(t *testing.T, ctx context.Context, h multihost.Host) *toxiproxy.Client {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "toxiproxy.log")
	logF, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary("toxiproxy"), "-host", h.IP, "-port", strconv.Itoa(toxiproxyAPI)) //nolint:noctx // stopped in cleanup
	cmd.Stdout, cmd.Stderr = logF, logF
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := h.Start(cmd); err != nil {
		_ = logF.Close()
		t.Fatalf("toxiproxy on %s: %v", h.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logF.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- toxiproxy on %s (last %d lines) ---\n%s", h.Name, logTailLines, devstack.LogTail(logPath, logTailLines))
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	c := toxiproxy.NewClient(h.Addr(toxiproxyAPI))
	waitFor(t, ctx, "toxiproxy on "+h.Name, 30*time.Second, func() error { _, err := c.Proxies(); return err })
	return c
}

// createProxy makes a proxy on h from port+proxyOffset to port.
func createProxy(t *testing.T, c *toxiproxy.Client, name string, h multihost.Host, port int) *toxiproxy.Proxy {
	t.Helper()
	p, err := c.CreateProxy(name, h.Addr(port+proxyOffset), h.Addr(port))
	if err != nil {
		t.Fatalf("toxiproxy %s on %s: %v", name, h.Name, err)
	}
	return p
}

// membersAlive is nil when the nodes are alive members in the server's
// view.
func membersAlive(c *api.Client, nodes ...string) error {
	members, err := c.Agent().Members(false)
	if err != nil {
		return err
	}
	alive := map[string]bool{}
	for _, m := range members {
		alive[m.Name] = m.Status == 1 // serf's StatusAlive
	}
	for _, n := range nodes {
		if !alive[n] {
			return fmt.Errorf("%s not alive", n)
		}
	}
	return nil
}

// waitFor polls check until it returns nil, failing the test after limit.
func waitFor(t *testing.T, ctx context.Context, what string, limit time.Duration, check func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, errors.Join(err, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
