// Package scaffold is what `make rename` and `make new-service` run: it
// rewrites the module path of a copy of the template, or adds a service from
// the templates under templates/service. Each is one change: when any step
// fails, every file it wrote or regenerated is put back as it was.
package scaffold

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Runner runs one command in dir and returns its combined output in the
// error when it fails. Tests replace it to fail a step on purpose.
type Runner func(ctx context.Context, dir, name string, args ...string) error

// Exec is the Runner that runs real commands.
func Exec(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Option configures Rename and NewService.
type Option func(*options)

type options struct {
	run Runner
	log func(format string, args ...any)
}

// WithRunner replaces the command runner (Exec by default).
func WithRunner(r Runner) Option { return func(o *options) { o.run = r } }

// WithLog reports each step; by default the steps are silent.
func WithLog(f func(format string, args ...any)) Option { return func(o *options) { o.log = f } }

func newOptions(opts []Option) options {
	o := options{run: Exec, log: func(string, ...any) {}}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// change remembers what each file under root held before the first write,
// so rollback can undo the writes of a failed step, including files a
// generator rewrote behind our back (see snapshot).
type change struct {
	root     string
	original map[string][]byte // nil: the file did not exist
	dirs     []string          // directories this change created
}

func newChange(root string) *change {
	return &change{root: root, original: make(map[string][]byte)}
}

// snapshot records rel's current content once, before anything touches it.
func (c *change) snapshot(rel string) error {
	if _, seen := c.original[rel]; seen {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(c.root, rel))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.original[rel] = nil
	case err != nil:
		return err
	default:
		c.original[rel] = b
	}
	return nil
}

// write replaces rel with data, creating its directory when needed.
func (c *change) write(rel string, data []byte) error {
	if err := c.snapshot(rel); err != nil {
		return err
	}
	if err := c.mkdirAll(filepath.Dir(rel)); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(filepath.Join(c.root, rel)); err == nil {
		mode = fi.Mode().Perm()
	}
	return os.WriteFile(filepath.Join(c.root, rel), data, mode)
}

func (c *change) mkdirAll(rel string) error {
	var missing []string
	for d := rel; d != "." && d != string(filepath.Separator); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(c.root, d)); err == nil {
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(filepath.Join(c.root, missing[i]), 0o755); err != nil {
			return err
		}
		c.dirs = append(c.dirs, missing[i])
	}
	return nil
}

// rollback puts every recorded file back and removes the directories the
// change created (deepest first, only when empty again).
func (c *change) rollback() error {
	var errs []error
	for rel, b := range c.original {
		path := filepath.Join(c.root, rel)
		if b == nil {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	dirs := append([]string(nil), c.dirs...)
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		_ = os.RemoveAll(filepath.Join(c.root, d))
	}
	return errors.Join(errs...)
}

// generated are the files `make api` (buf generate: messages, gRPC stubs,
// grpc-gateway handlers, OpenAPI) and `make generate` (wire) own, as globs
// relative to the repository root. Rename leaves their content to the
// generators, and a step that runs the generators snapshots them first. The
// Makefile's GENERATED names the same api/ files for check-generated.
var generated = []string{
	"api/*/*/*.pb.go",
	"api/*/*/*.pb.gw.go",
	"api/*/*/*.openapi.yaml",
	"cmd/*/wire_gen.go",
}

// isGenerated reports whether rel, a slash-separated path relative to the
// repository root, is a file a generator owns.
func isGenerated(rel string) bool {
	for _, pattern := range generated {
		if ok, _ := path.Match(pattern, rel); ok {
			return true
		}
	}
	return false
}

// generatedFiles lists the generated files that exist under root.
func generatedFiles(root string) ([]string, error) {
	var out []string
	for _, pattern := range generated {
		matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(pattern)))
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			rel, err := filepath.Rel(root, m)
			if err != nil {
				return nil, err
			}
			out = append(out, rel)
		}
	}
	return out, nil
}

// regenerate runs the repository's own generators (buf through `make api`,
// wire through `make generate`) and then builds everything, with the
// generated files snapshotted so a failure can be rolled back. expected are
// generated files that do not exist yet.
func regenerate(ctx context.Context, c *change, o options, expected ...string) error {
	files, err := generatedFiles(c.root)
	if err != nil {
		return err
	}
	for _, f := range append(files, expected...) {
		if err := c.snapshot(f); err != nil {
			return err
		}
	}
	o.log("regenerating the API (buf) and wire code (make api generate)")
	if err := o.run(ctx, c.root, "make", "--no-print-directory", "api", "generate"); err != nil {
		return err
	}
	o.log("building (go build ./...)")
	return o.run(ctx, c.root, "go", "build", "./...")
}

// undo wraps err with the outcome of rolling c back.
func undo(c *change, err error) error {
	if rbErr := c.rollback(); rbErr != nil {
		return fmt.Errorf("%w (and putting the tree back failed: %w)", err, rbErr)
	}
	return fmt.Errorf("%w (nothing was changed)", err)
}
