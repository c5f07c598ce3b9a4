package devstack_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// A stack that cannot start returns the error and stops what it had
// started (here the Consul agent), instead of leaving it running.
func TestStartStackStopsWhatItStartedOnError(t *testing.T) {
	t.Setenv(api.HTTPAddrEnvName, "")
	root, err := devstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	ctx := devstacktest.Context(t, 3*time.Minute)
	s, err := devstack.StartStack(ctx, devstack.StackConfig{
		RepoRoot: root,
		WorkDir:  work,
		Services: []devstack.ServiceCount{{Name: "user", Instances: 1}},
		Bins:     map[string]string{"user": filepath.Join(work, "no-such-binary")},
	})
	if err == nil {
		_ = s.Stop()
		t.Fatal("a stack with a missing binary started")
	}
	if left := processesMentioning(t, work); len(left) > 0 {
		t.Fatalf("still running after the failed start: %v", left)
	}
}

// processesMentioning lists the command lines of live processes that name s.
func processesMentioning(t *testing.T, s string) []string {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil || len(cmdlines) == 0 {
		t.Skip("no /proc to read processes from")
	}
	var out []string
	for _, p := range cmdlines {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), s) {
			out = append(out, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}
