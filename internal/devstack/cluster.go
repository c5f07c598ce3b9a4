package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ConsulCluster is a Consul cluster on loopback: n servers that elect a
// leader among themselves (-bootstrap-expect=n) and one client agent that
// services talk to, as they would to the agent on their own host. Unlike a
// dev agent, the servers keep Raft state in data dirs, so losing one server
// (even the leader) loses no registration. Chaos tests use it to kill the
// leader under load.
type ConsulCluster struct {
	opts    consulOptions
	ownsDir bool
	servers []*clusterAgent
	client  *clusterAgent
	lease   *portLease // every agent's ports, held until Stop
}

// clusterAgent is one agent of the cluster.
type clusterAgent struct {
	name   string
	server bool
	ports  consulPorts

	mu   sync.Mutex
	proc *consulProc // nil once killed or stopped
}

// StartConsulCluster starts servers Consul servers and one client agent on
// 127.0.0.1, each with its own free ports and data dir, and waits until the
// client agent reports a leader and every agent is a member. Options are
// those of StartConsul (binary, dir, start and stop timeouts); the HTTP
// port and node name options do not apply.
func StartConsulCluster(ctx context.Context, servers int, opts ...ConsulOption) (c *ConsulCluster, err error) {
	if servers < 1 {
		return nil, errors.New("consul cluster: need at least one server")
	}
	o, err := newConsulOptions(ctx, 60*time.Second, opts)
	if err != nil {
		return nil, fmt.Errorf("consul cluster: %w", err)
	}
	c = &ConsulCluster{opts: o}
	if o.dir == "" {
		if c.opts.dir, err = os.MkdirTemp("", "devstack-cluster-"); err != nil {
			return nil, fmt.Errorf("consul cluster: %w", err)
		}
		c.ownsDir = true
	}
	// A port taken by a process outside devstack makes an agent exit at
	// start; the whole cluster then starts again on fresh ports.
	for attempt := 1; ; attempt++ {
		if err = c.launch(ctx, servers); err == nil {
			return c, nil
		}
		c.stopAgents()
		for _, a := range append(c.servers, c.client) {
			if a != nil {
				_ = os.RemoveAll(filepath.Join(c.opts.dir, a.name)) // no Raft state from a failed start
			}
		}
		if !isBindCollision(err) || attempt == bindAttempts || ctx.Err() != nil {
			break
		}
	}
	if c.ownsDir {
		_ = os.RemoveAll(c.opts.dir)
	}
	return nil, err
}

// launch leases every agent's ports, starts the agents and waits until
// the cluster is ready. On error the caller stops what was started.
func (c *ConsulCluster) launch(ctx context.Context, servers int) error {
	lease, err := leasePorts(4 * (servers + 1))
	if err != nil {
		return fmt.Errorf("consul cluster: %w", err)
	}
	c.lease = lease
	agents := make([]*clusterAgent, 0, servers+1)
	for i := range servers + 1 {
		a := &clusterAgent{name: fmt.Sprintf("server-%d", i+1), server: i < servers}
		if !a.server {
			a.name = "client"
		}
		ps := lease.ports[4*i:]
		a.ports = consulPorts{http: ps[0], server: ps[1], serfLAN: ps[2], serfWAN: ps[3]}
		agents = append(agents, a)
	}
	c.servers, c.client = agents[:servers], agents[servers]
	for _, a := range agents {
		if err := c.start(ctx, a, agents); err != nil {
			return err
		}
	}
	return c.waitReady(ctx, len(agents))
}

// start launches one agent that joins every other agent's Serf LAN port.
func (c *ConsulCluster) start(ctx context.Context, a *clusterAgent, all []*clusterAgent) error {
	dir := filepath.Join(c.opts.dir, a.name)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return fmt.Errorf("consul cluster: %w", err)
	}
	logF, err := os.OpenFile(filepath.Join(dir, "consul.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("consul cluster: %w", err)
	}
	args := []string{
		"agent",
		"-node", a.name,
		"-data-dir", filepath.Join(dir, "data"),
		"-bind", "127.0.0.1",
		"-client", "127.0.0.1",
		"-http-port", strconv.Itoa(a.ports.http),
		"-serf-lan-port", strconv.Itoa(a.ports.serfLAN),
		"-serf-wan-port", strconv.Itoa(a.ports.serfWAN),
		"-server-port", strconv.Itoa(a.ports.server),
		"-dns-port", "-1",
		"-grpc-port", "-1",
		"-grpc-tls-port", "-1",
		"-retry-interval", "1s",
		// Production timing (the default multiplier, 5, is for small
		// cloud VMs): a lost leader is replaced in a second or two. Connect's
		// CA, for instances in mtls mode (a dev agent has it on).
		"-hcl", "disable_update_check = true\nperformance { raft_multiplier = 1 }\nconnect { enabled = true }",
	}
	if a.server {
		args = append(args, "-server", "-bootstrap-expect", strconv.Itoa(len(c.servers)))
	}
	for _, other := range all {
		if other != a {
			args = append(args, "-retry-join", net.JoinHostPort("127.0.0.1", strconv.Itoa(other.ports.serfLAN)))
		}
	}
	// The agent outlives the start-up context: only KillServer or Stop end it.
	cmd := exec.CommandContext(context.WithoutCancel(ctx), c.opts.binary, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logF, logF
	cmd.SysProcAttr = consulSysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logF.Close()
		return fmt.Errorf("consul cluster: start %s: %w", a.name, err)
	}
	p := &consulProc{cmd: cmd, logF: logF, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logF.Close()
		close(p.exited)
	}()
	a.mu.Lock()
	a.proc = p
	a.mu.Unlock()
	return nil
}

// waitReady polls the client agent until there is a leader and members
// agents are alive.
func (c *ConsulCluster) waitReady(ctx context.Context, members int) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.startTimeout)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var last error
	for {
		last = c.ready(ctx, hc, members)
		if last == nil {
			return nil
		}
		for _, a := range append([]*clusterAgent{c.client}, c.servers...) {
			if p := a.current(); p != nil {
				select {
				case <-p.exited:
					return fmt.Errorf("consul cluster: %s %w at start: %w (log %s): %s", a.name, errExitedAtStart, p.err, c.LogPath(a.name), errorLine(fileTail(c.LogPath(a.name), 30)))
				default:
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consul cluster not ready after %s: %w (last: %w)", c.opts.startTimeout, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *ConsulCluster) ready(ctx context.Context, hc *http.Client, members int) error {
	var leader string
	if err := consulCall(ctx, hc, http.MethodGet, "http://"+c.Addr()+"/v1/status/leader", nil, &leader); err != nil {
		return err
	}
	if leader == "" {
		return errors.New("no leader yet")
	}
	var nodes []struct{ Node string }
	if err := consulCall(ctx, hc, http.MethodGet, "http://"+c.Addr()+"/v1/catalog/nodes", nil, &nodes); err != nil {
		return err
	}
	if len(nodes) < members {
		return fmt.Errorf("%d of %d nodes in the catalog", len(nodes), members)
	}
	return nil
}

func (a *clusterAgent) current() *consulProc {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proc
}

// Addr is the client agent's HTTP API as host:port: what services and
// tests should use as CONSUL_HTTP_ADDR.
func (c *ConsulCluster) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.client.ports.http))
}

// ServerAddr is the HTTP API of server i (0-based).
func (c *ConsulCluster) ServerAddr(i int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.servers[i].ports.http))
}

// Servers is the number of servers.
func (c *ConsulCluster) Servers() int { return len(c.servers) }

// LogPath is the log file of the agent named name ("server-1", …, "client").
func (c *ConsulCluster) LogPath(name string) string {
	return filepath.Join(c.opts.dir, name, "consul.log")
}

// Leader returns the index of the server that the client agent reports as
// leader, or -1 and an error if there is none or it is not one of ours.
func (c *ConsulCluster) Leader(ctx context.Context) (int, error) {
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	var leader string
	if err := consulCall(ctx, hc, http.MethodGet, "http://"+c.Addr()+"/v1/status/leader", nil, &leader); err != nil {
		return -1, fmt.Errorf("leader: %w", err)
	}
	if leader == "" {
		return -1, errors.New("leader: none")
	}
	_, port, err := net.SplitHostPort(leader)
	if err != nil {
		return -1, fmt.Errorf("leader %q: %w", leader, err)
	}
	for i, s := range c.servers {
		if strconv.Itoa(s.ports.server) == port {
			return i, nil
		}
	}
	return -1, fmt.Errorf("leader %s is not a server of this cluster", leader)
}

// KillServer SIGKILLs server i, as a crash would, and waits until it is gone.
func (c *ConsulCluster) KillServer(i int) {
	c.servers[i].kill()
}

func (a *clusterAgent) kill() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc == nil {
		return
	}
	_ = signalConsulGroup(a.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-a.proc.exited
	a.proc = nil
}

// terminate sends SIGTERM, waits up to timeout, then kills.
func (a *clusterAgent) terminate(timeout time.Duration) {
	if p := a.current(); p != nil {
		if signalConsulGroup(p.cmd.Process.Pid, syscall.SIGTERM) == nil {
			select {
			case <-p.exited:
			case <-time.After(timeout):
			}
		}
	}
	a.kill()
}

// Stop ends every agent (SIGTERM, then SIGKILL after the stop timeout) and
// removes the directory it made. It is safe to call more than once.
func (c *ConsulCluster) Stop() error {
	c.stopAgents()
	if c.ownsDir {
		if err := os.RemoveAll(c.opts.dir); err != nil {
			return fmt.Errorf("stop consul cluster: %w", err)
		}
	}
	return nil
}

// stopAgents ends every agent and releases their ports.
func (c *ConsulCluster) stopAgents() {
	var wg sync.WaitGroup
	for _, a := range append([]*clusterAgent{c.client}, c.servers...) {
		if a == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.terminate(c.opts.stopTimeout)
		}()
	}
	wg.Wait()
	c.lease.release()
}
