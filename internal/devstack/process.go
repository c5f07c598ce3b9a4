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
}

// ServiceProc is one running service instance on loopback.
type ServiceProc struct {
	Spec     ServiceSpec
	GRPCAddr string // 127.0.0.1:port the instance serves gRPC on
	HTTPAddr string // 127.0.0.1:port of its /healthz and /readyz
	LogPath  string

	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	err    error // Wait's result, valid after exited closes
}

var instanceSeq struct {
	sync.Mutex
	n int
}

// StartService starts one instance with its gRPC and HTTP ports chosen free
// (passed through RAMPART_GRPC_ADDR / RAMPART_HTTP_ADDR, so the caller knows
// them) and waits until /healthz answers. It does not wait for Consul; use
// WaitPassing for that.
func StartService(ctx context.Context, spec ServiceSpec) (*ServiceProc, error) {
	grpcPort, err := freePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	instanceSeq.Lock()
	instanceSeq.n++
	seq := instanceSeq.n
	instanceSeq.Unlock()

	p := &ServiceProc{
		Spec:     spec,
		GRPCAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(grpcPort)),
		HTTPAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)),
		LogPath:  filepath.Join(spec.LogDir, fmt.Sprintf("%s-%d.log", spec.Name, seq)),
		exited:   make(chan struct{}),
	}
	logF, err := os.Create(p.LogPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p.cmd = exec.Command(spec.Binary, "-conf", spec.Config) //nolint:noctx // the instance outlives ctx; Stop and Kill end it
	p.cmd.Env = append(os.Environ(),
		"RAMPART_GRPC_ADDR="+p.GRPCAddr,
		"RAMPART_HTTP_ADDR="+p.HTTPAddr,
		"CONSUL_HTTP_ADDR="+spec.ConsulAddr,
	)
	p.cmd.Env = append(p.cmd.Env, spec.Env...)
	p.cmd.Stdout, p.cmd.Stderr = logF, logF
	p.cmd.SysProcAttr = consulSysProcAttr()
	if err := p.cmd.Start(); err != nil {
		_ = logF.Close()
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	go func() {
		err := p.cmd.Wait()
		_ = logF.Close()
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
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy: %w", ctx.Err())
		case <-p.exited:
			return fmt.Errorf("exited at start: %w", p.ExitErr())
		case <-time.After(50 * time.Millisecond):
		}
	}
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

// freePort asks the kernel for a free loopback port. Another process can
// take it before the service binds it; the service then retries its bind
// and the caller's wait times out with the log named, rather than hanging.
func freePort() (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
