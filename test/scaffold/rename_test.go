package scaffold

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// TestRenameLeavesAWorkingTree renames a copy to another module path and
// checks what a user would: it builds, vets and passes its unit tests, no
// file names the old path any more, a second run changes nothing, and a
// service scaffolded afterwards lives under the new path.
func TestRenameLeavesAWorkingTree(t *testing.T) {
	ctx := devstacktest.Context(t, 12*time.Minute)
	dir := copyRepo(t, ctx)
	const newPath = "example.com/acme/shop"

	before := treeHash(t, dir)
	out, err := tryRun(ctx, dir, "make", "--no-print-directory", "rename", "MODULE=not a path")
	if err == nil || !strings.Contains(out, "module path") {
		t.Fatalf("make rename with a malformed path: err=%v, want a refusal naming the module path:\n%s", err, out)
	}
	unchanged(t, "a refused rename", before, treeHash(t, dir))

	run(t, ctx, dir, "make", "--no-print-directory", "rename", "MODULE="+newPath)
	if got := run(t, ctx, dir, "go", "list", "-m"); strings.TrimSpace(got) != newPath {
		t.Fatalf("go list -m = %q, want %s", got, newPath)
	}
	run(t, ctx, dir, "go", "build", "./...")
	run(t, ctx, dir, "go", "vet", "./...")
	run(t, ctx, dir, "go", append([]string{"test", "-count=1"}, unitPackages(t, ctx, dir)...)...)

	var stale []string
	err = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case e.IsDir() && e.Name() == "bin":
			return filepath.SkipDir
		case e.IsDir():
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), devstack.RepoModulePath) {
			rel, _ := filepath.Rel(dir, p)
			stale = append(stale, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) > 0 {
		t.Errorf("files still naming %s after the rename: %v", devstack.RepoModulePath, stale)
	}

	renamed := treeHash(t, dir)
	out = run(t, ctx, dir, "make", "--no-print-directory", "rename", "MODULE="+newPath)
	if !strings.Contains(out, "already") {
		t.Errorf("second rename said %q, want that there is nothing to do", out)
	}
	unchanged(t, "a second rename", renamed, treeHash(t, dir))

	// The path a user takes: rename first, then add a service, which must
	// land under the new path.
	run(t, ctx, dir, "make", "--no-print-directory", "new-service", "NAME=payment")
	proto, err := os.ReadFile(filepath.Join(dir, "api", "payment", "v1", "payment.proto"))
	if err != nil || !strings.Contains(string(proto), `go_package = "`+newPath+`/api/payment/v1;v1"`) {
		t.Errorf("payment.proto after the rename: %v\n%s", err, proto)
	}
	run(t, ctx, dir, "go", "vet", "./cmd/payment/", "./internal/...")
}
