package scaffold

import (
	"bytes"
	"context"
	"fmt"
	"go/format"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
)

// ModulePath reads the module path from root/go.mod.
func ModulePath(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	if p := modfile.ModulePath(b); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("%s: no module line", filepath.Join(root, "go.mod"))
}

// CheckModulePath says why path cannot be the module path, or returns nil.
func CheckModulePath(path string) error {
	if err := module.CheckPath(path); err != nil {
		return fmt.Errorf("module path %q: %w (want something like github.com/acme/shop)", path, err)
	}
	return nil
}

// skipDirs are never rewritten: version control, build output, and the
// work directories of make run and the tests.
var skipDirs = map[string]bool{".git": true, "bin": true, ".devstack": true, "node_modules": true}

// Rename rewrites the module path of the repository at root to newPath in
// every text file that names it (go.mod, imports, go_package options, the
// tool modules such as tools/buf, Makefile, configs, docs, lint settings),
// regenerates what a generator owns (see generated) instead of patching it,
// and builds the result. It returns the files it rewrote. Renaming to the
// current path changes nothing; a malformed path is refused before any
// write, and a failed step puts every file back.
func Rename(ctx context.Context, root, newPath string, opts ...Option) ([]string, error) {
	o := newOptions(opts)
	if err := CheckModulePath(newPath); err != nil {
		return nil, err
	}
	oldPath, err := ModulePath(root)
	if err != nil {
		return nil, err
	}
	if oldPath == newPath {
		o.log("module is already %s; nothing to do", newPath)
		return nil, nil
	}
	if strings.HasPrefix(newPath, oldPath+"/") {
		// Every later run would find the old path inside the new one.
		return nil, fmt.Errorf("module path %q: must not extend the current path %s", newPath, oldPath)
	}
	rewrites, err := planRename(root, oldPath, newPath)
	if err != nil {
		return nil, err
	}
	c := newChange(root)
	changed := make([]string, 0, len(rewrites))
	for rel, b := range rewrites {
		if err := c.write(rel, b); err != nil {
			return nil, undo(c, fmt.Errorf("rewrite %s: %w", rel, err))
		}
		changed = append(changed, rel)
	}
	o.log("rewrote %s to %s in %d files", oldPath, newPath, len(changed))
	if err := regenerate(ctx, c, o); err != nil {
		return nil, undo(c, fmt.Errorf("rename to %s: %w", newPath, err))
	}
	return changed, nil
}

// planRename computes the new content of every file that names oldPath,
// without writing anything.
func planRename(root, oldPath, newPath string) (map[string][]byte, error) {
	out := make(map[string][]byte)
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if p != root && skipDirs[e.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || isGenerated(filepath.ToSlash(rel)) {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.IndexByte(b, 0) >= 0 {
			return nil // binary
		}
		nb := replacePath(b, oldPath, newPath)
		if bytes.Equal(nb, b) {
			return nil
		}
		if strings.HasSuffix(rel, ".go") {
			if nb, err = format.Source(nb); err != nil {
				return fmt.Errorf("%s after the rewrite: %w", rel, err)
			}
		}
		out[rel] = nb
		return nil
	})
	return out, err
}

// replacePath replaces oldPath where it stands as a whole module path:
// followed by "/" or by anything that cannot continue a path element, never
// inside a longer name such as oldPath-extra or x.oldPath. A "." counts as
// continuing only when a name character follows, so a sentence may end with
// the path.
func replacePath(b []byte, oldPath, newPath string) []byte {
	old := []byte(oldPath)
	var out bytes.Buffer
	for {
		i := bytes.Index(b, old)
		if i < 0 {
			out.Write(b)
			return out.Bytes()
		}
		end := i + len(old)
		whole := (i == 0 || !isNameByte(b[i-1])) && !continuesName(b[end:])
		out.Write(b[:i])
		if whole {
			out.WriteString(newPath)
		} else {
			out.Write(old)
		}
		b = b[end:]
	}
}

func continuesName(rest []byte) bool {
	if len(rest) == 0 {
		return false
	}
	if rest[0] == '.' {
		return len(rest) > 1 && isNameByte(rest[1])
	}
	return isNameByte(rest[0])
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '~' || c == '.'
}
