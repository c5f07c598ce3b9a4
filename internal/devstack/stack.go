package devstack

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// StackConfig describes a local stack: which services, how many instances
// of each, and where binaries and logs go.
type StackConfig struct {
	RepoRoot  string
	Services  []ServiceCount
	WorkDir   string   // binaries and logs are written here
	Env       []string // extra environment for every instance
	StopAfter time.Duration
	// Configs replaces configs/<name>.yaml for the named services, for tests
	// that need another policy.
	Configs map[string]string
	// Bins are binaries already built, by service name; when set, StartStack
	// uses them instead of building, so a test package builds once.
	Bins map[string]string
	// Security is the security.mode of every instance: "" keeps what each
	// service's config file says (SecurityMode), SecurityPlaintext or
	// SecurityMTLS sets it for all through RAMPART_SECURITY_MODE. A stack
	// with an instance in mtls that starts its own agent starts it with ACLs
	// on and default deny: each service gets a token of its own with the
	// least policy and the intentions to call the services its config's
	// clients name; the launcher's ClientIdentity may call every service.
	// An agent from CONSUL_HTTP_ADDR is used as it is: the launcher has no
	// management token for it, so it writes no tokens or intentions (on an
	// agent without ACLs every call is allowed).
	Security string
}

// The values of security.mode (internal/conf), as StackConfig.Security
// takes them.
const (
	SecurityPlaintext = "plaintext"
	SecurityMTLS      = "mtls"
)

// ServiceCount is one service and its number of instances.
type ServiceCount struct {
	Name      string
	Instances int
}

// Stack is a Consul agent plus running service instances.
type Stack struct {
	Consul     *ConsulAgent // nil when an agent from CONSUL_HTTP_ADDR is used
	ConsulAddr string
	Client     *api.Client
	Bins       map[string]string

	cfg   StackConfig
	env   map[string][]string // per service, beside cfg.Env (mtls: mode and token)
	mtls  bool                // some instance runs in mtls: ACLs on (StackConfig.Security)
	mu    sync.Mutex
	procs map[string][]*ServiceProc
}

// StartStack builds the services, uses the agent at CONSUL_HTTP_ADDR if one
// answers or starts a dev agent, starts every instance and
// waits until Consul reports all of them passing. On error everything
// started is stopped. Client carries the management token in mtls.
func StartStack(ctx context.Context, cfg StackConfig) (s *Stack, err error) {
	if cfg.StopAfter == 0 {
		cfg.StopAfter = 15 * time.Second
	}
	s = &Stack{cfg: cfg, procs: make(map[string][]*ServiceProc)}
	// `return nil, err` clears the named result before this runs, so the
	// cleanup holds its own reference to what was started.
	started := s
	defer func() {
		if err != nil {
			_ = started.Stop()
		}
	}()
	names := make([]string, 0, len(cfg.Services))
	for _, sc := range cfg.Services {
		names = append(names, sc.Name)
	}
	if cfg.Bins != nil {
		s.Bins = cfg.Bins
	} else if s.Bins, err = BuildServices(ctx, cfg.RepoRoot, filepath.Join(cfg.WorkDir, "bin"), names...); err != nil {
		return nil, err
	}
	if s.mtls, err = s.anyMTLS(); err != nil {
		return nil, err
	}
	if addr, ok := ConsulFromEnv(ctx); ok {
		s.ConsulAddr = addr
	} else {
		bin, buildErr := EnsureConsulBinary(ctx, cfg.RepoRoot)
		if buildErr != nil {
			return nil, buildErr
		}
		opts := []ConsulOption{WithConsulBinary(bin), WithConsulDir(filepath.Join(cfg.WorkDir, "consul"))}
		if s.mtls {
			opts = append(opts, WithConsulACL())
		}
		if s.Consul, err = StartConsul(ctx, opts...); err != nil {
			return nil, err
		}
		s.ConsulAddr = s.Consul.Addr()
	}
	apiCfg := api.DefaultConfig()
	apiCfg.Address = s.ConsulAddr
	if s.mtls {
		apiCfg.Token = s.ManagementToken()
	}
	if s.Client, err = api.NewClient(apiCfg); err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	if s.mtls && s.Consul != nil {
		if s.env, err = s.secureStack(ctx); err != nil {
			return nil, err
		}
	}
	for _, sc := range cfg.Services {
		for range sc.Instances {
			if _, err := s.Add(ctx, sc.Name); err != nil {
				return nil, err
			}
		}
	}
	for _, sc := range cfg.Services {
		if _, err := WaitPassing(ctx, s.Client, sc.Name, sc.Instances); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Add starts one more instance of name; it does not wait for Consul.
func (s *Stack) Add(ctx context.Context, name string) (*ServiceProc, error) {
	bin, ok := s.Bins[name]
	if !ok {
		return nil, fmt.Errorf("add %s: not built in this stack", name)
	}
	env, err := s.ServiceEnv(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", name, err)
	}
	p, err := StartService(ctx, ServiceSpec{
		Name:       name,
		Binary:     bin,
		Config:     s.configFor(name),
		ConsulAddr: s.ConsulAddr,
		// Instances of one service share one store, as they would share a
		// database in production.
		Env:    append(append([]string{"RAMPART_SQLITE_PATH=" + s.SQLitePath(name)}, env...), s.cfg.Env...),
		LogDir: s.cfg.WorkDir,
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.procs[name] = append(s.procs[name], p)
	s.mu.Unlock()
	return p, nil
}

// SQLitePath is the database file the instances of name share (with
// data.driver sqlite, as in the shipped configs).
func (s *Stack) SQLitePath(name string) string {
	return filepath.Join(s.cfg.WorkDir, "data", name+".db")
}

func (s *Stack) configFor(name string) string {
	if path, ok := s.cfg.Configs[name]; ok {
		return path
	}
	return filepath.Join(s.cfg.RepoRoot, "configs", name+".yaml")
}

// Instances returns the instances of name started so far, in start order,
// including any that have since exited.
func (s *Stack) Instances(name string) []*ServiceProc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*ServiceProc(nil), s.procs[name]...)
}

// Stop stops every instance gracefully (SIGTERM, so each deregisters), then
// the agent if the stack started it. It returns the instances' exit errors.
func (s *Stack) Stop() error {
	s.mu.Lock()
	var all []*ServiceProc
	for _, ps := range s.procs {
		all = append(all, ps...)
	}
	s.mu.Unlock()
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, p := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Stop(s.cfg.StopAfter); err != nil {
				errs[i] = fmt.Errorf("%s: %w", filepath.Base(p.LogPath), err)
			}
		}()
	}
	wg.Wait()
	if s.Consul != nil {
		errs = append(errs, s.Consul.Stop())
	}
	return errors.Join(errs...)
}
