package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
)

// nomadPackage is what tools/nomad builds; its go.mod pins the version.
const nomadPackage = "github.com/hashicorp/nomad"

// EnsureNomadBinary returns <repoRoot>/bin/nomad, building it from the
// tools/nomad module first if it is missing (about 2.5 minutes cold).
func EnsureNomadBinary(ctx context.Context, repoRoot string) (string, error) {
	return ensureToolBinary(ctx, repoRoot, "nomad", "nomad", nomadPackage)
}

// NomadConfig says how to start a Nomad dev agent.
type NomadConfig struct {
	Binary     string // bin/nomad
	Dir        string // config, state and log; created if missing
	ConsulAddr string // host:port of the Consul agent jobs register in
	// ConsulToken is the agent's own Consul ACL token, "" without ACLs.
	// Without a workload identity set up in Consul, Nomad registers the
	// jobs' services with it (NomadPolicyRules says what it needs).
	ConsulToken string
	// StartTimeout bounds the wait for a leader and a ready client node.
	StartTimeout time.Duration
}

// NomadAgent is a running `nomad agent -dev` (server and client in one
// process) on 127.0.0.1, with raw_exec enabled and Consul integration
// pointed at one agent. Stop ends the jobs it ran and then the agent.
type NomadAgent struct {
	cfg     NomadConfig
	port    int
	lease   *portLease // the agent's ports, held until Stop
	logPath string
	dataDir string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	hc      *http.Client

	mu   sync.Mutex
	jobs []string
}

// nomadAgentHCL is the dev agent's configuration. The cloud fingerprinters
// are denied: they probe metadata endpoints and fail with the module
// versions the tool module resolves. Nomad's own services are not
// advertised in Consul: only the jobs' services are of interest there.
// The tasks' dynamic ports come from a range stated here because devstack
// draws its own ports from outside it (ports.go).
const nomadAgentHCL = `name                 = "rampart-dev"
data_dir             = %q
bind_addr            = "127.0.0.1"
log_level            = "INFO"
disable_update_check = true

ports {
  http = %d
  rpc  = %d
  serf = %d
}

advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}

client {
  network_interface = "lo"
  min_dynamic_port  = %d
  max_dynamic_port  = %d
  options = {
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }
}

plugin "raw_exec" {
  config {
    enabled = true
  }
}

consul {
  address          = %q
  auto_advertise   = false
  server_auto_join = false
  client_auto_join = false
%s}
`

// NomadPolicyRules is the Consul ACL policy of a Nomad agent that
// registers the jobs' services with its own token: write on every service
// (Nomad names them from the jobs), and on the nodes and read on the
// agent, as Nomad's documentation lists for its clients (less acl and mesh
// write, which only Consul's service mesh and workload identities need).
const NomadPolicyRules = `agent_prefix "" { policy = "read" }
node_prefix "" { policy = "write" }
service_prefix "" { policy = "write" }
`

// StartNomad starts a Nomad dev agent on free loopback ports and waits
// until it has a leader and its client node is ready to run allocations.
func StartNomad(ctx context.Context, cfg NomadConfig) (*NomadAgent, error) {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = time.Minute
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("start nomad: %w", err)
	}
	// A port taken by a process outside devstack makes the agent exit at
	// start; it is started again on fresh ports.
	for attempt := 1; ; attempt++ {
		a, err := startNomadOnce(ctx, cfg)
		if err == nil || !isBindCollision(err) || attempt == bindAttempts || ctx.Err() != nil {
			return a, err
		}
		_ = os.RemoveAll(filepath.Join(cfg.Dir, "data")) // no state from the failed start
	}
}

func startNomadOnce(ctx context.Context, cfg NomadConfig) (*NomadAgent, error) {
	lease, err := leasePorts(3)
	if err != nil {
		return nil, fmt.Errorf("start nomad: %w", err)
	}
	ports := lease.ports
	a := &NomadAgent{
		cfg:     cfg,
		port:    ports[0],
		lease:   lease,
		logPath: filepath.Join(cfg.Dir, "nomad.log"),
		dataDir: filepath.Join(cfg.Dir, "data"),
		exited:  make(chan struct{}),
		hc:      &http.Client{Timeout: 5 * time.Second},
	}
	confPath := filepath.Join(cfg.Dir, "agent.hcl")
	var token string
	if cfg.ConsulToken != "" {
		token = fmt.Sprintf("  token            = %q\n", cfg.ConsulToken)
	}
	hcl := fmt.Sprintf(nomadAgentHCL, a.dataDir, ports[0], ports[1], ports[2], nomadDynamicMin, nomadDynamicMax, cfg.ConsulAddr, token)
	// Owner-readable only: it may hold the agent's Consul token.
	if err = os.WriteFile(confPath, []byte(hcl), 0o600); err != nil {
		lease.release()
		return nil, fmt.Errorf("start nomad: %w", err)
	}
	logF, err := os.Create(a.logPath)
	if err != nil {
		lease.release()
		return nil, fmt.Errorf("start nomad: %w", err)
	}
	// The agent outlives the start-up context: only Stop ends it.
	a.cmd = exec.CommandContext(context.WithoutCancel(ctx), cfg.Binary, "agent", "-dev", "-config", confPath)
	a.cmd.Dir = cfg.Dir
	a.cmd.Env = append(os.Environ(), "NOMAD_ADDR=", "NOMAD_TOKEN=")
	a.cmd.Stdout, a.cmd.Stderr = logF, logF
	a.cmd.SysProcAttr = consulSysProcAttr()
	if err := a.cmd.Start(); err != nil {
		_ = logF.Close()
		lease.release()
		return nil, fmt.Errorf("start nomad: %w", err)
	}
	go func() {
		a.waitErr = a.cmd.Wait()
		_ = logF.Close()
		close(a.exited)
	}()
	if err := a.waitReady(ctx); err != nil {
		_ = a.Stop()
		tail := fileTail(a.logPath, 30)
		return nil, fmt.Errorf("start nomad: %w: %s\n--- %s (tail) ---\n%s", err, errorLine(tail), a.logPath, tail)
	}
	return a, nil
}

func (a *NomadAgent) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.StartTimeout)
	defer cancel()
	var last error
	for {
		var nodes []struct {
			Status                string
			SchedulingEligibility string
			Drivers               map[string]struct{ Healthy bool }
		}
		last = a.get(ctx, "/v1/nodes?resources=false", &nodes)
		if last == nil {
			last = errors.New("no ready client node with raw_exec yet")
			for _, n := range nodes {
				if n.Status == "ready" && n.SchedulingEligibility == "eligible" && n.Drivers["raw_exec"].Healthy {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last: %w)", ctx.Err(), last)
		case <-a.exited:
			return fmt.Errorf("nomad agent %w at start: %w", errExitedAtStart, a.waitErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Addr is the agent's HTTP address, host:port.
func (a *NomadAgent) Addr() string { return "127.0.0.1:" + strconv.Itoa(a.port) }

// HTTPAddr is the value for NOMAD_ADDR.
func (a *NomadAgent) HTTPAddr() string { return "http://" + a.Addr() }

// UIURL is the web UI.
func (a *NomadAgent) UIURL() string { return a.HTTPAddr() + "/ui/" }

// LogPath is the agent's log file.
func (a *NomadAgent) LogPath() string { return a.logPath }

// DataDir is the agent's state; allocation directories (and task logs)
// are under DataDir/alloc.
func (a *NomadAgent) DataDir() string { return a.dataDir }

// CLI runs `nomad <args>` against this agent and returns its output.
func (a *NomadAgent) CLI(ctx context.Context, args ...string) (string, error) {
	return a.cli(ctx, nil, args...)
}

// cli is CLI with env added to the command's environment.
func (a *NomadAgent) cli(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, a.cfg.Binary, args...)
	cmd.Env = append(append(os.Environ(), "NOMAD_ADDR="+a.HTTPAddr(), "NOMAD_TOKEN="), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("nomad %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// RunJob submits the job file with HCL2 variables (nomad job run -var) and
// returns at once; the job is stopped by Stop. Wait for its instances with
// WaitPassing, or for a deployment with WaitDeployment. Secrets are
// variables too, handed to the CLI as NOMAD_VAR_<name> in its environment
// so that neither its command line nor an error quoting it shows them.
func (a *NomadAgent) RunJob(ctx context.Context, job, file string, vars, secrets map[string]string) error {
	args := []string{"job", "run", "-detach"}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, "-var", k+"="+vars[k])
	}
	env := make([]string, 0, len(secrets))
	for k, v := range secrets {
		env = append(env, "NOMAD_VAR_"+k+"="+v)
	}
	if _, err := a.cli(ctx, env, append(args, file)...); err != nil {
		return err
	}
	a.mu.Lock()
	if !slices.Contains(a.jobs, job) {
		a.jobs = append(a.jobs, job)
	}
	a.mu.Unlock()
	return nil
}

// NomadAlloc is the part of a Nomad allocation the tests look at.
type NomadAlloc struct {
	ID               string
	Name             string
	JobVersion       uint64
	ClientStatus     string // pending, running, complete, failed, lost
	DesiredStatus    string // run, stop, evict
	DeploymentStatus *struct {
		Healthy *bool
	}
}

// Running reports whether the allocation runs and is meant to.
func (al NomadAlloc) Running() bool { return al.ClientStatus == "running" && al.DesiredStatus == "run" }

// Healthy reports whether its deployment marked it healthy.
func (al NomadAlloc) Healthy() bool {
	return al.DeploymentStatus != nil && al.DeploymentStatus.Healthy != nil && *al.DeploymentStatus.Healthy
}

// terminal reports whether the allocation's processes are gone.
func (al NomadAlloc) terminal() bool {
	switch al.ClientStatus {
	case "complete", "failed", "lost":
		return true
	}
	return false
}

// Allocs lists every allocation of job, past ones included.
func (a *NomadAgent) Allocs(ctx context.Context, job string) ([]NomadAlloc, error) {
	var out []NomadAlloc
	err := a.get(ctx, "/v1/job/"+url.PathEscape(job)+"/allocations?all=true", &out)
	return out, err
}

// StopAlloc stops one allocation the way `nomad alloc stop` does: Nomad
// deregisters its service, waits shutdown_delay, signals it and places a
// replacement.
func (a *NomadAgent) StopAlloc(ctx context.Context, id string) error {
	_, err := a.CLI(ctx, "alloc", "stop", "-detach", id)
	return err
}

// NomadDeployment is the part of a deployment the tests look at.
type NomadDeployment struct {
	ID                string
	JobVersion        uint64
	Status            string
	StatusDescription string
}

// WaitDeployment waits until the latest deployment of job is for at least
// version and has succeeded, and returns it; a failed or cancelled one is
// an error.
func (a *NomadAgent) WaitDeployment(ctx context.Context, job string, version uint64) (*NomadDeployment, error) {
	var last NomadDeployment
	for {
		var d *NomadDeployment
		if err := a.get(ctx, "/v1/job/"+url.PathEscape(job)+"/deployment", &d); err == nil && d != nil {
			last = *d
			if d.JobVersion >= version {
				switch d.Status {
				case "successful":
					return d, nil
				case "failed", "cancelled":
					return d, fmt.Errorf("deployment %s of %s v%d: %s (%s)", d.ID, job, d.JobVersion, d.Status, d.StatusDescription)
				}
			}
		}
		select {
		case <-ctx.Done():
			return &last, fmt.Errorf("wait for deployment of %s v%d (last: v%d %s): %w", job, version, last.JobVersion, last.Status, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// JobVersion is the current version of job.
func (a *NomadAgent) JobVersion(ctx context.Context, job string) (uint64, error) {
	var j struct{ Version uint64 }
	err := a.get(ctx, "/v1/job/"+url.PathEscape(job), &j)
	return j.Version, err
}

func (a *NomadAgent) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.HTTPAddr()+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// nomadStopTimeout bounds each step of Stop: the jobs' graceful stop
// (shutdown_delay + drain + GracefulStop, well under it) and the agent's.
const nomadStopTimeout = 45 * time.Second

// Stop stops every job RunJob submitted and waits until their allocations
// have ended (each instance stops gracefully), then stops the agent.
// Whatever still runs under the agent's data directory after that is
// killed, so nothing is left behind even when a step failed.
func (a *NomadAgent) Stop() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), nomadStopTimeout)
	defer cancel()
	a.mu.Lock()
	jobs := slices.Clone(a.jobs)
	a.jobs = nil
	a.mu.Unlock()
	select {
	case <-a.exited:
	default:
		for _, job := range jobs {
			if _, err := a.CLI(ctx, "job", "stop", "-detach", job); err != nil {
				errs = append(errs, err)
			}
		}
		for _, job := range jobs {
			if err := a.waitAllocsEnded(ctx, job); err != nil {
				errs = append(errs, err)
			}
		}
		_ = a.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-a.exited:
		case <-time.After(nomadStopTimeout):
			errs = append(errs, fmt.Errorf("nomad agent still running %s after SIGINT; killed", nomadStopTimeout))
		}
	}
	_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	<-a.exited
	a.lease.release()
	if n := killUnder(a.dataDir); n > 0 {
		errs = append(errs, fmt.Errorf("killed %d task processes still running under %s", n, a.dataDir))
	}
	return errors.Join(errs...)
}

func (a *NomadAgent) waitAllocsRunning(ctx context.Context, job string, n int) error {
	for {
		allocs, err := a.Allocs(ctx, job)
		running := 0
		for _, al := range allocs {
			if al.Running() {
				running++
			}
		}
		if err == nil && running >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d allocations of %s running in Nomad: %w", running, n, job, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (a *NomadAgent) waitAllocsEnded(ctx context.Context, job string) error {
	for {
		allocs, err := a.Allocs(ctx, job)
		if err == nil && !slices.ContainsFunc(allocs, func(al NomadAlloc) bool { return !al.terminal() }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("allocations of %s still running: %w", job, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// killUnder SIGKILLs every process whose command line or NOMAD_ALLOC_DIR
// names a path under dir: the executors and tasks of this agent only,
// which a crashed or killed agent leaves running by design (a restarted
// client re-attaches to them). It returns how many it killed.
func killUnder(dir string) int {
	if dir == "" {
		return 0
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	prefix := []byte(dir + string(filepath.Separator))
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		environ, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if bytes.Contains(cmdline, prefix) || bytes.Contains(environ, append([]byte("NOMAD_ALLOC_DIR="), prefix...)) {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				n++
			}
		}
	}
	return n
}

// fileTail returns the last n lines of the file at path.
func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return consulLogLines(b, n)
}

// NomadStackConfig describes a local Nomad deployment of the services.
type NomadStackConfig struct {
	RepoRoot string
	WorkDir  string // binaries, agent state, logs and the services' data
	// Count is the instances per job (the jobs' count variable); 0 means 2.
	Count int
	// Jobs are the services to run, in start order; nil means every job
	// spec under deploy/nomad.
	Jobs []string
	// Bins are binaries already built, by service name; missing ones are
	// built into WorkDir/bin.
	Bins map[string]string
	// Security is the security_mode of every job: "" the one each
	// service's config file says (SecurityMode), SecurityPlaintext or
	// SecurityMTLS for all; either way each job is passed its mode
	// explicitly. If any job runs mtls, Consul runs with ACLs on
	// (WithConsulACL): the Nomad agent registers with a token of
	// NomadPolicyRules, each job gets a token of its own
	// (ServicePolicyRules, callees from its config) as its consul_token,
	// and intentions allow each service to call its callees and
	// ClientIdentity to call every service.
	Security string
}

// NomadStack is a Consul dev agent, a Nomad dev agent pointed at it, and
// the jobs of deploy/nomad running on it.
type NomadStack struct {
	Consul *ConsulAgent
	Nomad  *NomadAgent
	Bins   map[string]string
	cfg    NomadStackConfig
	modes  map[string]string // each job's security_mode
	mtls   bool              // some job runs mtls: ACLs on
	tokens map[string]string // each job's Consul token, ACLs on
}

// StartNomadStack builds what is missing (bin/consul, bin/nomad, the
// services), starts both agents on loopback, submits the jobs and waits
// until Consul shows Count passing instances of each. On error everything
// started is stopped.
func StartNomadStack(ctx context.Context, cfg NomadStackConfig) (s *NomadStack, err error) {
	if cfg.Count == 0 {
		cfg.Count = 2
	}
	if cfg.Jobs == nil {
		if cfg.Jobs, err = JobSpecs(cfg.RepoRoot); err != nil {
			return nil, err
		}
	}
	s = &NomadStack{cfg: cfg, Bins: map[string]string{}, modes: map[string]string{}, tokens: map[string]string{}}
	for _, job := range cfg.Jobs {
		if s.modes[job], err = s.jobMode(job); err != nil {
			return nil, err
		}
		s.mtls = s.mtls || s.modes[job] == SecurityMTLS
	}
	// `return nil, err` clears the named result before this runs, so the
	// cleanup holds its own reference to what was started.
	started := s
	defer func() {
		if err != nil {
			_ = started.Stop()
		}
	}()
	var missing []string
	for _, name := range cfg.Jobs {
		if bin, ok := cfg.Bins[name]; ok {
			s.Bins[name] = bin
		} else {
			missing = append(missing, name)
		}
	}
	built, err := BuildServices(ctx, cfg.RepoRoot, filepath.Join(cfg.WorkDir, "bin"), missing...)
	if err != nil {
		return nil, err
	}
	for name, bin := range built {
		s.Bins[name] = bin
	}
	consulBin, err := EnsureConsulBinary(ctx, cfg.RepoRoot)
	if err != nil {
		return nil, err
	}
	nomadBin, err := EnsureNomadBinary(ctx, cfg.RepoRoot)
	if err != nil {
		return nil, err
	}
	consulOpts := []ConsulOption{WithConsulBinary(consulBin), WithConsulDir(filepath.Join(cfg.WorkDir, "consul"))}
	if s.mtls {
		consulOpts = append(consulOpts, WithConsulACL())
	}
	if s.Consul, err = StartConsul(ctx, consulOpts...); err != nil {
		return nil, err
	}
	var nomadToken string
	if s.mtls {
		if nomadToken, err = s.Consul.PolicyToken(ctx, "nomad", NomadPolicyRules); err != nil {
			return nil, err
		}
		if err = s.secureJobs(ctx); err != nil {
			return nil, err
		}
	}
	if s.Nomad, err = StartNomad(ctx, NomadConfig{
		Binary: nomadBin, Dir: filepath.Join(cfg.WorkDir, "nomad"), ConsulAddr: s.Consul.Addr(), ConsulToken: nomadToken,
	}); err != nil {
		return nil, err
	}
	dataDir := filepath.Join(cfg.WorkDir, "data")
	if err = os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	for _, job := range cfg.Jobs {
		if err = s.RunJob(ctx, job, nil); err != nil {
			return nil, err
		}
	}
	client, err := s.ConsulClient()
	if err != nil {
		return nil, err
	}
	for _, job := range cfg.Jobs {
		if _, err := WaitPassing(ctx, client, job, cfg.Count); err != nil {
			return nil, fmt.Errorf("%w\n%s", err, s.TaskLogTails(job, 20))
		}
		// Consul can see a task pass before the Nomad client has reported it
		// running to the server (it batches status updates), and a caller
		// that acts on allocations next needs Nomad's view to agree.
		if err := s.Nomad.waitAllocsRunning(ctx, job, cfg.Count); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// jobMode is the security_mode job runs: NomadStackConfig.Security, else
// its config file's.
func (s *NomadStack) jobMode(job string) (string, error) {
	switch s.cfg.Security {
	case SecurityPlaintext, SecurityMTLS:
		return s.cfg.Security, nil
	case "":
		return SecurityMode(s.configFor(job))
	}
	return "", fmt.Errorf("nomad stack: security %q is not %s or %s", s.cfg.Security, SecurityPlaintext, SecurityMTLS)
}

// MTLS reports whether some job runs in mtls mode, so that a client must
// present a certificate (of ClientIdentity) and Consul reads need the
// management token (ConsulClient has it).
func (s *NomadStack) MTLS() bool { return s.mtls }

// secureJobs creates, on an agent started WithConsulACL, each job's token
// and intentions as make run's stack does (provisionService); a plaintext
// job needs its token too, to discover through an agent with ACLs.
func (s *NomadStack) secureJobs(ctx context.Context) (err error) {
	for _, job := range s.cfg.Jobs {
		if s.tokens[job], err = provisionService(ctx, s.Consul, job, s.configFor(job)); err != nil {
			return err
		}
	}
	return nil
}

func (s *NomadStack) configFor(job string) string {
	return filepath.Join(s.cfg.RepoRoot, "configs", job+".yaml")
}

// RunJob submits (or updates) deploy/nomad/<job>.nomad.hcl with the
// stack's variables plus extra ones, e.g. {"revision": "2"} for a rolling
// update. The job's security mode is always passed (security_mode), so
// what the job registers agrees with what the process runs; with ACLs on
// the job's token goes in as consul_token.
func (s *NomadStack) RunJob(ctx context.Context, job string, extra map[string]string) error {
	vars := map[string]string{
		"count":         strconv.Itoa(s.cfg.Count),
		"binary":        s.Bins[job],
		"config":        s.configFor(job),
		"consul_addr":   s.Consul.Addr(),
		"data_dir":      filepath.Join(s.cfg.WorkDir, "data"),
		"security_mode": s.modes[job],
	}
	var secrets map[string]string
	if token := s.tokens[job]; token != "" {
		secrets = map[string]string{"consul_token": token}
	}
	for k, v := range extra {
		vars[k] = v
	}
	return s.Nomad.RunJob(ctx, job, filepath.Join(s.cfg.RepoRoot, "deploy", "nomad", job+".nomad.hcl"), vars, secrets)
}

// ConsulClient is a client of the stack's Consul agent, with the
// management token when the agent runs with ACLs (MTLS), and no idle
// connections left behind.
func (s *NomadStack) ConsulClient() (*api.Client, error) {
	cfg := api.DefaultNonPooledConfig()
	cfg.Address, cfg.Token = s.Consul.Addr(), s.Consul.ManagementToken()
	cfg.Transport.DisableKeepAlives = true
	return api.NewClient(cfg)
}

// ManagementToken is the management token of the stack's Consul agent
// (MTLS), "" otherwise.
func (s *NomadStack) ManagementToken() string {
	if s.Consul == nil {
		return ""
	}
	return s.Consul.ManagementToken()
}

// TaskLogTails returns the last n lines of the stderr of every allocation
// of job that Nomad kept, for failure reports.
func (s *NomadStack) TaskLogTails(job string, n int) string {
	var b strings.Builder
	paths, _ := filepath.Glob(filepath.Join(s.Nomad.DataDir(), "alloc", "*", "alloc", "logs", job+".std*.0"))
	for _, p := range paths {
		fmt.Fprintf(&b, "--- %s ---\n%s\n", p, fileTail(p, n))
	}
	return b.String()
}

// Stop stops the jobs, then the Nomad agent, then the Consul agent.
func (s *NomadStack) Stop() error {
	var errs []error
	if s.Nomad != nil {
		errs = append(errs, s.Nomad.Stop())
	}
	if s.Consul != nil {
		errs = append(errs, s.Consul.Stop())
	}
	return errors.Join(errs...)
}
