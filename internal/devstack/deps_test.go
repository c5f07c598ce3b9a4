package devstack_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// The launcher ships inside cmd/devstack, so it must stay a launcher: no
// test harness linked into a binary, and none of the service layers it
// only starts as processes. The per-test helpers live in devstacktest and
// the demo client in cmd/devstack/demo to keep it so.
func TestLauncherLinksNoTestHarness(t *testing.T) {
	root, err := devstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	const mod = devstack.RepoModulePath
	tests := []struct {
		name   string
		args   []string // go list arguments
		denied []string
	}{
		{
			name:   "the launcher's own imports",
			args:   []string{"-f", `{{join .Imports "\n"}}`, "./internal/devstack"},
			denied: []string{"testing", mod + "/internal/conf", mod + "/internal/data", mod + "/internal/middleware"},
		},
		{
			name:   "what the binaries link",
			args:   []string{"-deps", "./cmd/devstack", "./cmd/user", "./cmd/order"},
			denied: []string{"testing", mod + "/internal/devstack/devstacktest"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := devstacktest.Context(t, 2*time.Minute)
			cmd := exec.CommandContext(ctx, "go", append([]string{"list"}, tt.args...)...)
			cmd.Dir = root
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list %v: %v", tt.args, err)
			}
			pkgs := strings.Fields(string(out))
			for _, d := range tt.denied {
				if slices.ContainsFunc(pkgs, func(p string) bool { return p == d || strings.HasPrefix(p, d+"/") }) {
					t.Errorf("go list %s includes %s", strings.Join(tt.args, " "), d)
				}
			}
		})
	}
}
