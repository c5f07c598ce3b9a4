package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A throwaway PostgreSQL server for tests and `make run DATA=postgres`.
//
// PostgreSQL refuses to run as root, and a test machine is often root, so
// when this process is root the server runs as `nobody`: its cluster lives
// in a fresh directory under the system temp dir (every ancestor of which
// nobody can traverse) chowned to nobody, and initdb and postgres start with
// that user's credentials. No account is created. By default the server
// listens on 127.0.0.1 only, on a leased port (see ports.go), with its unix
// socket in the same directory, trust authentication for the `postgres`
// superuser and fsync off: a test database that a crash may lose, which is
// what tests and a demo want and what production must never copy. A test
// that puts the server on a host of its own (test/multihost: a network
// namespace) gives it an address and port there (WithPostgresListen), lets
// that subnet in (WithPostgresTrustNet) and starts the process inside the
// namespace (WithPostgresStarter).

// PostgresOption configures StartPostgres.
type PostgresOption func(*postgresOptions)

type postgresOptions struct {
	binDir       string
	logDir       string
	startTimeout time.Duration
	stopTimeout  time.Duration
	host         string // listen address; "" is 127.0.0.1
	port         int    // 0: a leased port
	trustNets    []string
	starter      func(*exec.Cmd) error
}

// WithPostgresBinDir sets the directory holding initdb and postgres; by
// default `pg_config --bindir`, then Debian's /usr/lib/postgresql/<major>/bin.
func WithPostgresBinDir(dir string) PostgresOption {
	return func(o *postgresOptions) { o.binDir = dir }
}

// WithPostgresLogDir sets where postgres.log is written; by default the
// server's own temp directory, removed by Stop.
func WithPostgresLogDir(dir string) PostgresOption {
	return func(o *postgresOptions) { o.logDir = dir }
}

// WithPostgresStartTimeout bounds initdb plus the server's start (default
// 60 s).
func WithPostgresStartTimeout(d time.Duration) PostgresOption {
	return func(o *postgresOptions) { o.startTimeout = d }
}

// WithPostgresListen makes the server listen on host (an IP address) and
// port instead of 127.0.0.1 and a leased port; port 0 keeps the lease. The
// caller owns a fixed port: a taken one fails the start, with no retry.
func WithPostgresListen(host string, port int) PostgresOption {
	return func(o *postgresOptions) { o.host, o.port = host, port }
}

// WithPostgresTrustNet lets clients from the network cidr (e.g.
// 10.231.7.0/24) in as any user without a password, beside loopback's:
// a pg_hba.conf line `host all all <cidr> trust`, for a test network that
// nothing else reaches.
func WithPostgresTrustNet(cidr string) PostgresOption {
	return func(o *postgresOptions) { o.trustNets = append(o.trustNets, cidr) }
}

// WithPostgresStarter starts the server process with start instead of
// cmd.Start, e.g. inside a network namespace; start must leave cmd started
// as Start does (Wait is called on it). initdb runs as usual.
func WithPostgresStarter(start func(cmd *exec.Cmd) error) PostgresOption {
	return func(o *postgresOptions) { o.starter = start }
}

// Postgres is a running server started by StartPostgres.
type Postgres struct {
	opts    postgresOptions
	dir     string // cluster, socket and (by default) log
	logPath string
	port    int
	lease   *portLease
	cred    *syscall.Credential // nil: run as this process's user
	once    sync.Once
	stopErr error

	mu     sync.Mutex // guards cmd and exited, replaced by Resume
	cmd    *exec.Cmd
	exited chan struct{}
}

// PostgresBinDir finds the server binaries: `pg_config --bindir` when
// pg_config is on PATH, else the newest /usr/lib/postgresql/*/bin.
func PostgresBinDir(ctx context.Context) (string, error) {
	if out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries (initdb): install Debian's postgresql package (make postgresql)")
}

// StartPostgres runs initdb into a fresh directory and starts postgres on
// a leased loopback port, waiting until it accepts connections. A port
// taken between the lease and the bind is retried on a fresh one, like the
// other launchers. Stop shuts it down and removes the directory.
func StartPostgres(ctx context.Context, opts ...PostgresOption) (*Postgres, error) {
	o := postgresOptions{startTimeout: time.Minute, stopTimeout: 30 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.host == "" {
		o.host = loopbackIP
	}
	for _, cidr := range o.trustNets {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			return nil, fmt.Errorf("postgres: trusted network: %w", err)
		}
	}
	if net.ParseIP(o.host) == nil {
		return nil, fmt.Errorf("postgres: listen address %q is not an IP address", o.host)
	}
	ctx, cancel := context.WithTimeout(ctx, o.startTimeout)
	defer cancel()
	if o.binDir == "" {
		dir, err := PostgresBinDir(ctx)
		if err != nil {
			return nil, err
		}
		o.binDir = dir
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "rampart-pg-")
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	p := &Postgres{opts: o, dir: dir, logPath: filepath.Join(dir, "postgres.log"), cred: cred}
	if o.logDir != "" {
		p.logPath = filepath.Join(o.logDir, "postgres.log")
	}
	if err = p.initdb(ctx); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		err = p.start(ctx)
		if err == nil {
			return p, nil
		}
		if !isBindCollision(err) || o.port != 0 || attempt == bindAttempts || ctx.Err() != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
}

// postgresCredential is nil when this process may run postgres itself, and
// nobody's uid and gid when it is root.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("postgres runs unprivileged and this process is root: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres: user nobody has uid %q gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func (p *Postgres) dataDir() string { return filepath.Join(p.dir, "data") }

func (p *Postgres) command(ctx context.Context, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(p.opts.binDir, name), args...)
	cmd.Dir = p.dir
	// A home nobody can read avoids initdb's complaint about /root.
	cmd.Env = append(os.Environ(), "HOME="+p.dir, "LC_ALL=C")
	attr := consulSysProcAttr()
	attr.Credential = cred
	cmd.SysProcAttr = attr
	return cmd
}

func (p *Postgres) initdb(ctx context.Context) error {
	if cred := p.cred; cred != nil {
		if err := os.Chown(p.dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("postgres: chown %s: %w", p.dir, err)
		}
	}
	cmd := p.command(ctx, p.cred, "initdb", "-D", p.dataDir(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("postgres initdb: %w\n%s", err, out)
	}
	if len(p.opts.trustNets) == 0 {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(p.dataDir(), "pg_hba.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	for _, cidr := range p.opts.trustNets {
		fmt.Fprintf(f, "host all all %s trust\n", cidr)
	}
	return f.Close()
}

// start runs the server once on a fresh port and waits until it accepts
// connections.
func (p *Postgres) start(ctx context.Context) error {
	if p.opts.port != 0 {
		p.port = p.opts.port
		return p.run(ctx)
	}
	lease, err := leasePorts(1)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	p.port, p.lease = lease.ports[0], lease
	if err := p.run(ctx); err != nil {
		lease.release()
		return err
	}
	return nil
}

// run starts postgres on p.port and waits until it accepts connections;
// on error the server is gone.
func (p *Postgres) run(ctx context.Context) error {
	logF, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	offset, _ := logF.Seek(0, io.SeekEnd)
	//nolint:noctx // the server outlives ctx; Stop ends it
	cmd := exec.Command(filepath.Join(p.opts.binDir, "postgres"),
		"-D", p.dataDir(), "-p", strconv.Itoa(p.port), "-k", p.dir,
		"-c", "listen_addresses="+p.opts.host, "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "logging_collector=off")
	tmpl := p.command(ctx, p.cred, "postgres")
	cmd.Dir, cmd.Env, cmd.SysProcAttr = tmpl.Dir, tmpl.Env, tmpl.SysProcAttr
	cmd.Stdout, cmd.Stderr = logF, logF
	start := (*exec.Cmd).Start
	if p.opts.starter != nil {
		start = p.opts.starter
	}
	if err := start(cmd); err != nil {
		_ = logF.Close()
		return fmt.Errorf("postgres: %w", err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		_ = logF.Close()
		close(exited)
	}()
	if err := p.waitReady(ctx, offset); err != nil {
		p.kill()
		return fmt.Errorf("postgres (log %s): %w", p.logPath, err)
	}
	return nil
}

func (p *Postgres) waitReady(ctx context.Context, offset int64) error {
	_, exited := p.current()
	for {
		log := p.logSince(offset)
		if strings.Contains(log, "ready to accept connections") {
			var d net.Dialer
			if c, err := d.DialContext(ctx, "tcp", p.Addr()); err == nil {
				_ = c.Close()
				return nil
			}
		}
		select {
		case <-exited:
			log = p.logSince(offset) // what it wrote before exiting
			if strings.Contains(strings.ToLower(log), errAddrInUse) {
				return fmt.Errorf("%w at start: %s", errExitedAtStart, errAddrInUse)
			}
			return fmt.Errorf("%w at start: %s", errExitedAtStart, consulLogLines([]byte(log), 5))
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *Postgres) logSince(offset int64) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

// Addr is the server's host:port: 127.0.0.1 unless WithPostgresListen.
func (p *Postgres) Addr() string { return net.JoinHostPort(p.opts.host, strconv.Itoa(p.port)) }

// DSN is a URL for database name on this server as the superuser
// postgres (no password: trust authentication on loopback).
func (p *Postgres) DSN(database string) string {
	u := url.URL{
		Scheme: "postgres", User: url.User("postgres"), Host: p.Addr(), Path: "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// LogPath is the server's log file.
func (p *Postgres) LogPath() string { return p.logPath }

// current is the running (or last) server process and its exit channel.
func (p *Postgres) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.exited
}

// Halt shuts the server down in fast mode (SIGINT: open sessions are
// rolled back, clients see their connections close) and waits for it,
// keeping the cluster and the port for Resume: a database outage for a
// test. SIGKILL after the stop timeout.
func (p *Postgres) Halt() error {
	cmd, exited := p.current()
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
		return nil
	case <-time.After(p.opts.stopTimeout):
		p.kill()
		return fmt.Errorf("postgres (pid %d) still running after %s; killed", cmd.Process.Pid, p.opts.stopTimeout)
	}
}

// Resume starts a halted server again on the same port, with its data,
// and waits until it accepts connections.
func (p *Postgres) Resume(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.startTimeout)
	defer cancel()
	return p.run(ctx)
}

// Stop shuts the server down like Halt, releases the port and removes the
// cluster. Safe to call more than once, and after Halt.
func (p *Postgres) Stop() error {
	p.once.Do(func() {
		p.stopErr = p.Halt()
		p.lease.release()
		_ = os.RemoveAll(p.dir)
	})
	return p.stopErr
}

// kill SIGKILLs the server's process group and waits for it.
func (p *Postgres) kill() {
	cmd, exited := p.current()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}
