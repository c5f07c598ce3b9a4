package multihost_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/leakcheck"
	"github.com/rampart-go/rampart/test/multihost"
)

var long = flag.Bool("multihost.long", false, "run every scenario at full length and write the multi-host section of docs/reliability.md")

const (
	// childEnv marks the second run of the test binary, inside ctl.
	childEnv = "RPT_MH_CHILD"
	// binsEnv passes the binaries the first run built: name=path,...
	binsEnv = "RPT_MH_BINS"
	// lockPath keeps two runs on one machine apart.
	lockPath = "/run/rpt-mh.lock"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild(m))
	}
	os.Exit(runParent())
}

// runChild is the test proper, inside ctl.
func runChild(m *testing.M) int {
	code := leakcheck.Run(m)
	if *long {
		if err := writeReport(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	return code
}

// runParent builds the hosts, runs the test binary again inside ctl, and
// removes the hosts whatever became of it (see the package comment).
func runParent() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "multihost: "+format+"\n", args...)
		fmt.Println("FAIL")
		return 1
	}
	if os.Geteuid() != 0 {
		return fail("needs root (it creates network namespaces and iptables rules); run it as root, as `make test-multihost` on CI does")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fail("needs %s on PATH (iproute2, iptables; `make test-multihost` installs iptables): %v", tool, err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lockCtx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	unlock, err := devstack.LockFile(lockCtx, lockPath)
	cancel()
	if err != nil {
		return fail("%v", err)
	}
	defer unlock()
	setupCtx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err = multihost.Teardown(setupCtx); err != nil {
		return fail("removing an earlier run's leftovers: %v", err)
	}
	if left, lerr := multihost.Leftovers(setupCtx); lerr != nil || len(left) > 0 {
		return fail("an earlier run's leftovers remain after the sweep: %v %v", left, lerr)
	}
	root, err := devstack.RepoRoot()
	if err != nil {
		return fail("%v", err)
	}
	dir, err := os.MkdirTemp("", "rpt-mh-bin-")
	if err != nil {
		return fail("%v", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	consulBin, err := devstack.EnsureConsulBinary(setupCtx, root)
	if err != nil {
		return fail("%v", err)
	}
	toxiproxyBin, err := devstack.EnsureToxiproxyBinary(setupCtx, root)
	if err != nil {
		return fail("%v", err)
	}
	bins, err := devstack.BuildServices(setupCtx, root, dir, "user", "order")
	if err != nil {
		return fail("%v", err)
	}
	binList := []string{"consul=" + consulBin, "toxiproxy=" + toxiproxyBin}
	for name, path := range bins {
		binList = append(binList, name+"="+path)
	}

	code := func() int {
		defer func() {
			tctx, tcancel := context.WithTimeout(context.Background(), time.Minute)
			defer tcancel()
			if terr := multihost.Teardown(tctx); terr != nil {
				fmt.Fprintf(os.Stderr, "multihost: teardown: %v\n", terr)
			}
		}()
		if berr := multihost.Build(setupCtx); berr != nil {
			return fail("%v", berr)
		}
		return runInCtl(ctx, binList)
	}()
	tctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	left, err := multihost.Leftovers(tctx)
	if err != nil {
		return fail("checking for leftovers: %v", err)
	}
	if len(left) > 0 {
		return fail("the run left behind: %s", strings.Join(left, "; "))
	}
	return code
}

// runInCtl runs this test binary again, with the same flags, inside ctl,
// and returns its exit code. It kills it a minute after the test's own
// timeout (when the testing package would have panicked), or on a signal.
func runInCtl(ctx context.Context, bins []string) int {
	limit := time.Duration(0)
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 0 {
			limit = d + time.Minute
		}
	}
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "multihost: %v\n", err)
		return 1
	}
	cmd := exec.Command(self, os.Args[1:]...) //nolint:noctx // ended below, by its process group
	cmd.Env = append(os.Environ(), childEnv+"=1", binsEnv+"="+strings.Join(bins, ","))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err = multihost.Ctl.Start(cmd); err != nil {
		fmt.Fprintf(os.Stderr, "multihost: start the test inside ctl: %v\n", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		fmt.Fprintf(os.Stderr, "multihost: %v: killing the test inside ctl\n", context.Cause(ctx))
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = <-done
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return exit.ExitCode()
	default:
		fmt.Fprintf(os.Stderr, "multihost: the test inside ctl: %v\n", err)
		return 1
	}
}

// binary is the path of a binary the first run built.
func binary(name string) string {
	for _, kv := range strings.Split(os.Getenv(binsEnv), ",") {
		if n, path, ok := strings.Cut(kv, "="); ok && n == name {
			return path
		}
	}
	return ""
}
