package scaffold

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// copyRepo copies the files of this checkout that git tracks or would
// track (what a clone plus the work in progress holds) into a temp dir, and
// links the Consul agent in, so the copy neither builds it again nor sees
// build output or work directories.
func copyRepo(t *testing.T, ctx context.Context) string {
	t.Helper()
	root, err := devstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, "git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := t.TempDir()
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, rel)
		fi, statErr := os.Lstat(src)
		if statErr != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, or not a plain file
		}
		b, readErr := os.ReadFile(src)
		if readErr != nil {
			t.Fatal(readErr)
		}
		to := filepath.Join(dst, rel)
		if err = os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err = os.WriteFile(to, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	consul, err := devstack.EnsureConsulBinary(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dst, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(consul, filepath.Join(dst, "bin", "consul")); err != nil {
		t.Fatal(err)
	}
	return dst
}

// run runs a command in dir and returns its combined output; it fails the
// test when the command fails, and logs how long the command took.
func run(t *testing.T, ctx context.Context, dir, name string, args ...string) string {
	t.Helper()
	start := time.Now()
	out, err := tryRun(ctx, dir, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	t.Logf("%s %s: %s", name, strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond))
	return out
}

func tryRun(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

// treeHash is every file's content under root (bin/ left out), to show a
// command changed nothing.
func treeHash(t *testing.T, root string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	err := filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if e.IsDir() {
			if rel == "bin" {
				return filepath.SkipDir
			}
			out[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func unchanged(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, b := range before {
		if a, ok := after[p]; !ok || a != b {
			t.Errorf("%s changed or removed %s", what, p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s left %s behind", what, p)
		}
	}
}

// unitPackages are the copy's packages whose tests need no process: not the
// process-level suites under test/, and not devstack and consul, which
// start real Consul agents (the suites of this repository run those).
func unitPackages(t *testing.T, ctx context.Context, dir string) []string {
	t.Helper()
	var out []string
	for _, p := range strings.Fields(run(t, ctx, dir, "go", "list", "./...")) {
		if strings.Contains(p, "/test/") || strings.HasSuffix(p, "/internal/devstack") || strings.HasSuffix(p, "/internal/consul") {
			continue
		}
		out = append(out, p)
	}
	return out
}

func isolateConsul(t *testing.T) {
	t.Helper()
	t.Setenv(api.HTTPAddrEnvName, "")
}
