package devstack

import (
	"context"
	"fmt"
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

// BuildServices compiles each named command (cmd/<name>) of the repository
// into outDir and returns the binary paths by name. Tests build fresh
// binaries so that they exercise the code under test, not a stale bin/.
func BuildServices(ctx context.Context, repoRoot, outDir string, names ...string) (map[string]string, error) {
	bins := make(map[string]string, len(names))
	for _, name := range names {
		out := filepath.Join(outDir, name)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/"+name)
		cmd.Dir = repoRoot
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %w\n%s", name, err, b)
		}
		bins[name] = out
	}
	return bins, nil
}

// ServiceSpec says how to start one service instance.
type ServiceSpec struct {
	Name       string   // service name, e.g. "user"
	Binary     string   // path to the built binary
	Config     string   // path to its config file
	ConsulAddr string   // host:port of the agent it registers with
	Env        []string // extra KEY=VALUE pairs, e.g. LOG_FORMAT=json
	LogDir     string   // where <name>-<n>.log goes
	// Addrs, when set, are the addresses the instance binds instead of
	// leased loopback ports: for an instance on a host of its own
	// (test/multihost). A taken one fails the start, with no retry.
	Addrs *ServiceAddrs
	// Start starts the process instead of cmd.Start, e.g. inside a network
	// namespace; it must leave cmd started as Start does.
	Start func(cmd *exec.Cmd) error
}

// ServiceAddrs are an instance's listen addresses (host:port).
type ServiceAddrs struct {
	GRPC, HTTP, Gateway string
}

// ServiceProc is one running service instance, on loopback unless
// ServiceSpec.Addrs says otherwise.
type ServiceProc struct {
	Spec        ServiceSpec
	GRPCAddr    string // host:port the instance serves gRPC on
	HTTPAddr    string // host:port of its /healthz and /readyz
	GatewayAddr string // host:port of its public HTTP/JSON API
	LogPath     string

	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	err    error // Wait's result, valid after exited closes
}

var instanceSeq struct {
	sync.Mutex
	n int
}

// StartService starts one instance on reserved loopback ports (passed
// through RAMPART_GRPC_ADDR / RAMPART_HTTP_ADDR / RAMPART_GATEWAY_ADDR, so
// the caller knows them)
// and waits until /healthz answers. An instance that finds one of its ports
// taken (it logs the bind error and keeps retrying) is killed and started
// again on fresh ports, a bounded number of times. It does not wait for
// Consul; use WaitPassing for that.
func StartService(ctx context.Context, spec ServiceSpec) (*ServiceProc, error) {
	for attempt := 1; ; attempt++ {
		p, err := startServiceOnce(ctx, spec)
		if err == nil || !isBindCollision(err) || spec.Addrs != nil || attempt == bindAttempts || ctx.Err() != nil {
			return p, err
		}
	}
}

func startServiceOnce(ctx context.Context, spec ServiceSpec) (*ServiceProc, error) {
	addrs, lease := spec.Addrs, (*portLease)(nil)
	if addrs == nil {
		var err error
		if lease, err = leasePorts(3); err != nil {
			return nil, fmt.Errorf("start %s: %w", spec.Name, err)
		}
		addrs = &ServiceAddrs{
			GRPC:    net.JoinHostPort(loopbackIP, strconv.Itoa(lease.ports[0])),
			HTTP:    net.JoinHostPort(loopbackIP, strconv.Itoa(lease.ports[1])),
			Gateway: net.JoinHostPort(loopbackIP, strconv.Itoa(lease.ports[2])),
		}
	}
	instanceSeq.Lock()
	instanceSeq.n++
	seq := instanceSeq.n
	instanceSeq.Unlock()

	p := &ServiceProc{
		Spec:        spec,
		GRPCAddr:    addrs.GRPC,
		HTTPAddr:    addrs.HTTP,
		GatewayAddr: addrs.Gateway,
		LogPath:     filepath.Join(spec.LogDir, fmt.Sprintf("%s-%d.log", spec.Name, seq)),
		exited:      make(chan struct{}),
	}
	logF, err := os.Create(p.LogPath)
	if err != nil {
		lease.release()
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p.cmd = exec.Command(spec.Binary, "-conf", spec.Config) //nolint:noctx // the instance outlives ctx; Stop and Kill end it
	p.cmd.Env = append(os.Environ(),
		"RAMPART_GRPC_ADDR="+p.GRPCAddr,
		"RAMPART_HTTP_ADDR="+p.HTTPAddr,
		"RAMPART_GATEWAY_ADDR="+p.GatewayAddr,
		"CONSUL_HTTP_ADDR="+spec.ConsulAddr,
	)
	p.cmd.Env = append(p.cmd.Env, spec.Env...)
	p.cmd.Stdout, p.cmd.Stderr = logF, logF
	p.cmd.SysProcAttr = consulSysProcAttr()
	start := (*exec.Cmd).Start
	if spec.Start != nil {
		start = spec.Start
	}
	if err := start(p.cmd); err != nil {
		_ = logF.Close()
		lease.release()
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	go func() {
		err := p.cmd.Wait()
		_ = logF.Close()
		lease.release()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.exited)
	}()
	if err := p.waitHealthy(ctx); err != nil {
		p.Kill()
		return nil, fmt.Errorf("start %s (log %s): %w", spec.Name, p.LogPath, err)
	}
	return p, nil
}

func (p *ServiceProc) waitHealthy(ctx context.Context) error {
	hc := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.HTTPAddr+"/healthz", nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		// The instance retries a taken port for as long as it runs (app.go's
		// listen); here fresh ports are the remedy.
		if reason := bindErrorLine(p.LogPath); reason != "" {
			return fmt.Errorf("%w at start: %s", errExitedAtStart, reason)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy: %w", ctx.Err())
		case <-p.exited:
			return fmt.Errorf("%w at start: %w", errExitedAtStart, p.ExitErr())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// bindErrorLine returns the log line in which the instance reports a port
// already in use, or "".
func bindErrorLine(logPath string) string {
	for _, l := range strings.Split(fileTail(logPath, 50), "\n") {
		if strings.Contains(l, errAddrInUse) {
			return l
		}
	}
	return ""
}

// PID is the process ID.
func (p *ServiceProc) PID() int { return p.cmd.Process.Pid }

// Signal sends sig to the instance (SIGTERM to stop it gracefully, SIGSTOP
// to hang it, SIGCONT to resume it).
func (p *ServiceProc) Signal(sig syscall.Signal) error {
	return p.cmd.Process.Signal(sig)
}

// Wait waits up to timeout for the process to exit and returns its exit
// error (nil for exit 0).
func (p *ServiceProc) Wait(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.ExitErr()
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %s", p.Spec.Name, p.PID(), timeout)
	}
}

// ExitErr is the result of the process once it has exited.
func (p *ServiceProc) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Exited is closed when the process has exited.
func (p *ServiceProc) Exited() <-chan struct{} { return p.exited }

// Stop sends SIGTERM and waits for a graceful exit, then SIGKILLs the
// process group if it did not come. Safe to call more than once.
func (p *ServiceProc) Stop(timeout time.Duration) error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGCONT) // a stopped process cannot handle SIGTERM
	_ = p.Signal(syscall.SIGTERM)
	if err := p.Wait(timeout); err != nil {
		p.Kill()
		return err
	}
	return nil
}

// Kill SIGKILLs the instance's process group and waits for it to go.
func (p *ServiceProc) Kill() {
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	<-p.exited
}

// WaitPassing waits until Consul reports exactly want passing instances of
// name and returns them.
func WaitPassing(ctx context.Context, client *api.Client, name string, want int) ([]*api.ServiceEntry, error) {
	var last []*api.ServiceEntry
	for {
		entries, _, err := client.Health().Service(name, "", true, (&api.QueryOptions{}).WithContext(ctx))
		if err == nil {
			last = entries
			if len(entries) == want {
				return entries, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("wait for %d passing %s instances (have %d): %w", want, name, len(last), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
