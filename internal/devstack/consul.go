// Package devstack is the launcher behind `make run` and `make nomad-up`:
// it builds the services, starts Consul (and Nomad) dev agents and the
// service instances, and stops them. Everything it starts runs in its own
// process group on loopback ports chosen free, so two stacks (or two test
// packages) never collide and nothing outlives its owner.
//
// It finds the services by convention (Services, JobSpecs), never by a
// list, and stays a launcher: it links no `testing` and none of the
// service layers (conf, data, middleware), since cmd/devstack ships it.
// The per-test helpers are in devstacktest, the demo flow in
// cmd/devstack/demo.
package devstack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
)

// RepoModulePath is the module whose root RepoRoot looks for. `make rename`
// rewrites it together with every other occurrence of the module path.
const RepoModulePath = "github.com/rampart-go/rampart"

// consulPackage is what tools/consul builds; its go.mod pins the version.
const consulPackage = "github.com/hashicorp/consul"

// RepoRoot walks up from the working directory to the directory whose go.mod
// declares RepoModulePath. Nested modules on the way (tools/consul has its own
// go.mod) are skipped, so it works from any package directory or tool module.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for {
		if mod, err := goModModulePath(filepath.Join(dir, "go.mod")); err == nil && mod == RepoModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("repo root: no go.mod declaring module %s above the working directory", RepoModulePath)
		}
		dir = parent
	}
}

// goModModulePath returns the module path declared in a go.mod file.
func goModModulePath(goMod string) (string, error) {
	f, err := os.Open(goMod)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("%s: no module line", goMod)
}

// EnsureConsulBinary returns <repoRoot>/bin/consul, building it from the
// tools/consul module first if it is missing.
func EnsureConsulBinary(ctx context.Context, repoRoot string) (string, error) {
	return ensureToolBinary(ctx, repoRoot, "consul", "consul", consulPackage)
}

// toxiproxyPackage is the fault proxy's server, which tools/toxiproxy
// pins (test/multihost adds latency with it).
const toxiproxyPackage = "github.com/Shopify/toxiproxy/v2/cmd/server"

// EnsureToxiproxyBinary returns <repoRoot>/bin/toxiproxy-server, building
// it from the tools/toxiproxy module first if it is missing.
func EnsureToxiproxyBinary(ctx context.Context, repoRoot string) (string, error) {
	return ensureToolBinary(ctx, repoRoot, "toxiproxy", "toxiproxy-server", toxiproxyPackage)
}

// ensureToolBinary returns <repoRoot>/bin/<name>, building pkg in the
// tools/<module> module first if it is missing. A file lock serialises
// concurrent callers (go test runs packages in parallel) and the binary is
// renamed into place only when complete, so nobody executes half a file.
func ensureToolBinary(ctx context.Context, repoRoot, module, name, pkg string) (string, error) {
	bin := filepath.Join(repoRoot, "bin", name)
	if consulBinaryExists(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	unlock, err := LockFile(ctx, filepath.Join(repoRoot, "bin", "."+name+".lock"))
	if err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	defer unlock()
	if consulBinaryExists(bin) { // another process built it while we waited for the lock
		return bin, nil
	}

	slog.InfoContext(ctx, "devstack: building bin/"+name+" from tools/"+module+"; this takes a few minutes the first time")
	start := time.Now()
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	defer func() { _ = os.Remove(tmp) }() // no-op once renamed
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, pkg)
	cmd.Dir = filepath.Join(repoRoot, "tools", module)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", name, err, consulLogLines(out.Bytes(), 30))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	slog.InfoContext(ctx, "devstack: built bin/"+name, "took", time.Since(start).Round(time.Second))
	return bin, nil
}

func consulBinaryExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// LockFile takes an exclusive flock on path (created if missing), polling
// so that ctx can cancel the wait (a blocking flock cannot be
// interrupted): one process at a time builds a tool binary, or runs
// test/multihost's hosts.
func LockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ConsulOption configures StartConsul.
type ConsulOption func(*consulOptions)

type consulOptions struct {
	binary       string
	dir          string
	httpPort     int
	nodeName     string
	startTimeout time.Duration
	stopTimeout  time.Duration
	aclToken     string     // management token; "" runs without ACLs (acl.go)
	ca           *devCA     // with aclToken: the CA every start of the agent uses (acl.go)
	https        *ConsulTLS // nil: no HTTPS API (consultls.go)
}

// WithConsulBinary runs this consul binary instead of <repo>/bin/consul
// (which StartConsul otherwise builds if missing).
func WithConsulBinary(path string) ConsulOption {
	return func(o *consulOptions) { o.binary = path }
}

// WithConsulDir keeps the agent's data dir and log in dir, which the caller
// owns; by default a temporary directory is made and removed by Stop.
func WithConsulDir(dir string) ConsulOption {
	return func(o *consulOptions) { o.dir = dir }
}

// WithConsulHTTPPort binds the HTTP API to this port instead of a free one,
// for tests that point a client at an address before the agent exists.
func WithConsulHTTPPort(port int) ConsulOption {
	return func(o *consulOptions) { o.httpPort = port }
}

// WithConsulNodeName sets the agent's node name; the default is unique per
// agent so that logs and the UI tell agents apart.
func WithConsulNodeName(name string) ConsulOption {
	return func(o *consulOptions) { o.nodeName = name }
}

// WithConsulStartTimeout bounds how long StartConsul and Restart wait for a
// leader and the node's own registration (default 30 s: a dev agent needs
// about 1 s, but loaded CI machines are slow).
func WithConsulStartTimeout(d time.Duration) ConsulOption {
	return func(o *consulOptions) { o.startTimeout = d }
}

// WithConsulStopTimeout bounds how long Stop waits after SIGTERM before it
// sends SIGKILL (default 5 s).
func WithConsulStopTimeout(d time.Duration) ConsulOption {
	return func(o *consulOptions) { o.stopTimeout = d }
}

// newConsulOptions applies opts over the defaults and, without
// WithConsulBinary, finds or builds <repo>/bin/consul.
func newConsulOptions(ctx context.Context, startTimeout time.Duration, opts []ConsulOption) (consulOptions, error) {
	o := consulOptions{startTimeout: startTimeout, stopTimeout: 5 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.aclToken != "" {
		var err error
		if o.ca, err = newDevCA(); err != nil {
			return o, err
		}
	}
	if o.binary != "" {
		return o, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return o, err
	}
	o.binary, err = EnsureConsulBinary(ctx, root)
	return o, err
}

// consulPorts are the agent's listeners. DNS, gRPC and gRPC-TLS are disabled
// (-1): nothing here uses them, and every port less is one collision less.
// HTTPS is 0 (off) unless WithConsulHTTPS.
type consulPorts struct {
	http, serfLAN, serfWAN, server, https int
}

// ConsulAgent is a running `consul agent -dev` on 127.0.0.1. Its state is in
// memory only, exactly like a developer's dev agent: Restart loses it.
type ConsulAgent struct {
	opts    consulOptions
	ownsDir bool
	logPath string
	ports   consulPorts
	lease   *portLease // holds ports until Stop

	mu      sync.Mutex
	proc    *consulProc // nil while no process runs (after Kill/Stop)
	stopped bool        // Stop was called; final
	starts  int
	tokens  []*tokenRecord // made through the agent, written again by Restart (acl.go)
	allowed [][2]string    // intentions caller -> callee, the same
}

// consulProc is one run of the agent process.
type consulProc struct {
	cmd      *exec.Cmd
	logF     *os.File
	logStart int64         // offset in the log where this run's output starts
	exited   chan struct{} // closed once Wait returned
	err      error         // Wait's result, valid after exited is closed
}

// StartConsul starts a Consul dev agent bound to 127.0.0.1 with free ports
// and waits until it has a leader and its own node is in the catalog, so the
// caller can register services at once. The agent runs in its own process
// group (and, on Linux, dies with its parent); call Stop to end it.
func StartConsul(ctx context.Context, opts ...ConsulOption) (*ConsulAgent, error) {
	o, err := newConsulOptions(ctx, 30*time.Second, opts)
	if err != nil {
		return nil, fmt.Errorf("start consul: %w", err)
	}
	if o.nodeName == "" {
		o.nodeName = "devstack-" + consulNodeSuffix()
	}
	a := &ConsulAgent{opts: o}
	if o.dir == "" {
		if a.opts.dir, err = os.MkdirTemp("", "devstack-consul-"); err != nil {
			return nil, fmt.Errorf("start consul: %w", err)
		}
		a.ownsDir = true
	} else if err = os.MkdirAll(o.dir, 0o755); err != nil {
		return nil, fmt.Errorf("start consul: %w", err)
	}
	a.logPath = filepath.Join(a.opts.dir, "consul.log")

	// The ports are reserved (ports.go), so only a process outside devstack
	// can hold one; the agent then exits at once, and it is started again on
	// fresh ports (keeping a fixed HTTP port: the caller told others of it).
	for attempt := 1; ; attempt++ {
		var lease *portLease
		if a.ports, lease, err = leaseConsulPorts(o.httpPort, o.https != nil); err != nil {
			break
		}
		a.mu.Lock()
		a.lease = lease
		err = a.startLocked(ctx)
		a.mu.Unlock()
		if err == nil {
			return a, nil
		}
		lease.release()
		if !isBindCollision(err) || attempt == bindAttempts || ctx.Err() != nil {
			break
		}
	}
	if a.ownsDir {
		_ = os.RemoveAll(a.opts.dir)
	}
	return nil, fmt.Errorf("start consul: %w", err)
}

// startLocked launches the process and waits for readiness; a.mu is held.
func (a *ConsulAgent) startLocked(ctx context.Context) error {
	logF, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	a.starts++
	fmt.Fprintf(logF, "==> devstack: start #%d of consul agent %s at %s\n", a.starts, a.opts.nodeName, time.Now().Format(time.RFC3339Nano))

	var logStart int64
	if fi, err := logF.Stat(); err == nil {
		logStart = fi.Size()
	}

	p := a.ports
	// The agent outlives the start-up context: only Stop or Kill end it.
	cmd := exec.CommandContext(context.WithoutCancel(ctx), a.opts.binary, "agent", "-dev",
		"-node", a.opts.nodeName,
		"-bind", "127.0.0.1",
		"-client", "127.0.0.1",
		"-http-port", strconv.Itoa(p.http),
		"-serf-lan-port", strconv.Itoa(p.serfLAN),
		"-serf-wan-port", strconv.Itoa(p.serfWAN),
		"-server-port", strconv.Itoa(p.server),
		"-dns-port", "-1",
		"-grpc-port", "-1",
		"-grpc-tls-port", "-1",
		// A dev agent would otherwise phone home for update checks.
		"-hcl", "disable_update_check = true",
	)
	cmd.Args = append(cmd.Args, a.opts.aclArgs()...)
	cmd.Args = append(cmd.Args, a.opts.httpsArgs(p.https)...)
	cmd.Dir = a.opts.dir
	cmd.Stdout, cmd.Stderr = logF, logF
	cmd.SysProcAttr = consulSysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logF.Close()
		return err
	}
	proc := &consulProc{cmd: cmd, logF: logF, logStart: logStart, exited: make(chan struct{})}
	go func() {
		proc.err = cmd.Wait()
		_ = logF.Close()
		close(proc.exited)
	}()
	a.proc = proc

	if err := a.waitReady(ctx, proc); err != nil {
		a.killLocked()
		logTail := a.LogTail(30)
		if reason := errorLine(logTail); reason != "" {
			err = fmt.Errorf("%w: %s", err, reason)
		}
		return fmt.Errorf("%w\n--- %s (tail) ---\n%s", err, a.logPath, logTail)
	}
	return nil
}

// consulSyncProbe is the service waitReady registers to see anti-entropy
// work; it is removed again before the agent is handed out.
const consulSyncProbe = "devstack-sync-probe"

// Anti-entropy start-up, as Consul 1.22 does it: the new-leader event
// triggers a full sync of the agent's state to the catalog twice, each after
// a random stagger of up to 3 s. While a triggered full sync waits out its
// stagger, partial syncs (a check turning critical, a new registration) wait
// too, so for up to 3 s after start a crashed instance stays "passing". The
// agent is ready only when both full syncs are done. They are seen in the
// log (the only place they show); should a later Consul log differently,
// consulSettleMax after the leader appeared is taken as settled.
const (
	consulFullSyncMarker = "Skipping remote check since it is managed automatically"
	consulFullSyncs      = 2
	consulSettleMax      = 3500 * time.Millisecond
)

// waitReady polls until the agent has a leader, lists its own node, has
// finished its start-up anti-entropy syncs, and syncs a probe service to the
// catalog and away again. Only then do check changes reach the catalog
// within milliseconds, which tests that measure failover rely on.
func (a *ConsulAgent) waitReady(ctx context.Context, proc *consulProc) error {
	ctx, cancel := context.WithTimeout(ctx, a.opts.startTimeout)
	defer cancel()
	// Keep-alives off: each probe is a fresh connection, so nothing idles on
	// after this function (goleak-friendly) and a restarted agent is seen.
	hc := &http.Client{Transport: a.opts.withToken(&http.Transport{DisableKeepAlives: true})}
	base := a.HTTPAddr()
	var leaderAt time.Time
	probeInCatalog := func(want bool) func() error {
		return func() error {
			var entries []json.RawMessage
			if err := consulCall(ctx, hc, http.MethodGet, base+"/v1/catalog/service/"+consulSyncProbe, nil, &entries); err != nil {
				return err
			}
			if (len(entries) > 0) != want {
				return errors.New("not synced yet")
			}
			return nil
		}
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"leader", func() error {
			var leader string
			if err := consulCall(ctx, hc, http.MethodGet, base+"/v1/status/leader", nil, &leader); err != nil {
				return err
			}
			if leader == "" {
				return errors.New("none yet")
			}
			return nil
		}},
		{"own node in catalog", func() error {
			var node *struct{ Node *struct{ Node string } }
			if err := consulCall(ctx, hc, http.MethodGet, base+"/v1/catalog/node/"+a.opts.nodeName, nil, &node); err != nil {
				return err
			}
			if node == nil || node.Node == nil {
				return errors.New("not registered yet")
			}
			return nil
		}},
		{"anti-entropy settled", func() error {
			if leaderAt.IsZero() {
				leaderAt = time.Now()
			}
			n := a.countInLog(proc.logStart, consulFullSyncMarker)
			if n >= consulFullSyncs || time.Since(leaderAt) > consulSettleMax {
				return nil
			}
			return fmt.Errorf("%d of %d full syncs done", n, consulFullSyncs)
		}},
		{"register sync probe", func() error {
			body := `{"ID":"` + consulSyncProbe + `","Name":"` + consulSyncProbe + `"}`
			return consulCall(ctx, hc, http.MethodPut, base+"/v1/agent/service/register", strings.NewReader(body), nil)
		}},
		{"sync probe in catalog", probeInCatalog(true)},
		{"deregister sync probe", func() error {
			return consulCall(ctx, hc, http.MethodPut, base+"/v1/agent/service/deregister/"+consulSyncProbe, nil, nil)
		}},
		{"sync probe gone from catalog", probeInCatalog(false)},
	}

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for i := 0; i < len(steps); {
		err := steps[i].do()
		if err == nil {
			i++
			continue
		}
		last = fmt.Errorf("%s: %w", steps[i].name, err)
		select {
		case <-proc.exited:
			return fmt.Errorf("consul agent %w during start-up: %w", errExitedAtStart, proc.err)
		case <-ctx.Done():
			return fmt.Errorf("consul agent not ready after %s: %w (last: %w)", a.opts.startTimeout, ctx.Err(), last)
		case <-tick.C:
		}
	}
	return nil
}

// countInLog counts the lines of the log from offset on that contain s.
func (a *ConsulAgent) countInLog(offset int64, s string) int {
	f, err := os.Open(a.logPath)
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0
	}
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			n++
		}
	}
	return n
}

// consulCall does one HTTP API request and decodes a JSON answer into out
// (unless out is nil).
func consulCall(ctx context.Context, hc *http.Client, method, url string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// Addr is the HTTP API address as host:port, the form CONSUL_HTTP_ADDR and
// api.Config.Address take.
func (a *ConsulAgent) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(a.ports.http))
}

// HTTPAddr is the HTTP API base URL, e.g. http://127.0.0.1:8500.
func (a *ConsulAgent) HTTPAddr() string { return "http://" + a.Addr() }

// UIURL is the address of the web UI, to print for a developer.
func (a *ConsulAgent) UIURL() string { return a.HTTPAddr() + "/ui/" }

// NodeName is the agent's node name, unique unless WithConsulNodeName set it.
func (a *ConsulAgent) NodeName() string { return a.opts.nodeName }

// LogPath is the file the agent's output goes to; restarts append to it.
func (a *ConsulAgent) LogPath() string { return a.logPath }

// LogTail returns the last n lines of the agent log, for failure reports.
func (a *ConsulAgent) LogTail(n int) string {
	f, err := os.Open(a.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer func() { _ = f.Close() }()
	// The tail is all we want; do not read a long log whole.
	const maxRead = 64 << 10
	if fi, statErr := f.Stat(); statErr == nil && fi.Size() > maxRead {
		_, _ = f.Seek(fi.Size()-maxRead, io.SeekStart)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	return consulLogLines(b, n)
}

// Stop ends the agent: SIGTERM to its process group, SIGKILL if it has not
// exited within the stop timeout. It removes the temporary directory it made.
// Stop is idempotent and safe after Kill; the agent cannot be restarted after.
func (a *ConsulAgent) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return nil
	}
	a.stopped = true
	err := a.terminateLocked()
	a.lease.release()
	if a.ownsDir {
		if rmErr := os.RemoveAll(a.opts.dir); rmErr != nil && err == nil {
			err = fmt.Errorf("stop consul: %w", rmErr)
		}
	}
	return err
}

// Kill ends the agent with SIGKILL at once, as a crash would; chaos tests
// use it. The directory is kept, so Restart or Stop may follow.
func (a *ConsulAgent) Kill() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.killLocked()
}

// Restart stops the agent gracefully (if it still runs) and starts a fresh
// one on the same ports and node name. Like restarting a real dev agent, all
// registrations and KV data are lost; clients keep working with the same
// address once it is ready. An agent WithConsulACL keeps what a cluster
// keeps on its servers across an agent restart: the CA, and the tokens and
// intentions made through it (acl.go).
func (a *ConsulAgent) Restart(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return errors.New("restart consul: agent was stopped")
	}
	if err := a.terminateLocked(); err != nil {
		return fmt.Errorf("restart consul: %w", err)
	}
	if err := a.startLocked(ctx); err != nil {
		return fmt.Errorf("restart consul: %w", err)
	}
	if err := a.replayLocked(ctx); err != nil {
		return fmt.Errorf("restart consul: %w", err)
	}
	return nil
}

// terminateLocked sends SIGTERM to the group, then SIGKILL after the stop
// timeout, and waits for the process. Its exit status is not an error: a
// signalled agent exits non-zero by design.
func (a *ConsulAgent) terminateLocked() error {
	p := a.proc
	if p == nil {
		return nil
	}
	if err := signalConsulGroup(p.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		a.killLocked()
		return nil
	}
	select {
	case <-p.exited:
	case <-time.After(a.opts.stopTimeout):
	}
	a.killLocked()
	return nil
}

// killLocked SIGKILLs the whole group (also after the leader exited, in case
// it left children) and waits until the process is reaped.
func (a *ConsulAgent) killLocked() {
	p := a.proc
	if p == nil {
		return
	}
	_ = signalConsulGroup(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
	a.proc = nil
}

// signalConsulGroup signals the process group led by pid. ESRCH (group already
// gone) is not an error.
func signalConsulGroup(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// ConsulFromEnv returns CONSUL_HTTP_ADDR if it is set and that agent reports a
// leader within about a second, so `make run` reuses a developer's agent. The
// probe honours the other CONSUL_HTTP_* variables (token, TLS).
func ConsulFromEnv(ctx context.Context) (addr string, ok bool) {
	addr = os.Getenv(api.HTTPAddrEnvName)
	if addr == "" {
		return "", false
	}
	cfg := api.DefaultConfig()
	client, err := api.NewClient(cfg)
	if err != nil {
		return "", false
	}
	if cfg.Transport != nil {
		defer cfg.Transport.CloseIdleConnections()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	leader, err := client.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
	if err != nil || leader == "" {
		return "", false
	}
	return addr, true
}

// leaseConsulPorts reserves the agent's ports: httpPort if it is not 0
// (the caller owns it), the others, and one for HTTPS if https, from
// ports.go. Serf uses each of its numbers on TCP and UDP; every leased
// port is free on both.
func leaseConsulPorts(httpPort int, https bool) (consulPorts, *portLease, error) {
	n := 3
	if httpPort == 0 {
		n++
	}
	if https {
		n++
	}
	l, err := leasePorts(n, httpPort)
	if err != nil {
		return consulPorts{}, nil, fmt.Errorf("pick ports: %w", err)
	}
	p := consulPorts{http: httpPort, server: l.ports[0], serfLAN: l.ports[1], serfWAN: l.ports[2]}
	rest := l.ports[3:]
	if httpPort == 0 {
		p.http, rest = rest[0], rest[1:]
	}
	if https {
		p.https = rest[0]
	}
	return p, l, nil
}

func consulNodeSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// errorLine returns a child's own reason for failing from the tail of its
// log (e.g. "bind: address already in use"): the last line that Consul
// marks [ERROR] or Nomad starts with "Error", or "" if there is none.
// Callers put it where a reader looks first.
func errorLine(logTail string) string {
	lines := strings.Split(logTail, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); strings.Contains(l, "[ERROR]") || strings.HasPrefix(strings.TrimLeft(l, "=> "), "Error") {
			return l
		}
	}
	return ""
}

// consulLogLines returns the last n lines of b.
func consulLogLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
