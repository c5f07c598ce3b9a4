package biz_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

// layers are the directories that hold one package per service.
var layers = []string{"biz", "data", "service"}

// TestNoServiceImportsAnother keeps the rule the package docs state: a
// service's package in any layer imports no other service's package in any
// layer, and the shared top-level packages import no service's package. So
// each binary links only its own domain, and a scaffolded service is held
// to the rule without being named here.
func TestNoServiceImportsAnother(t *testing.T) {
	root := filepath.Join("..", "..")
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	internal := modfile.ModulePath(gomod) + "/internal/"
	// serviceOf names the service whose package path is, or "" for a
	// package that belongs to no service.
	serviceOf := func(path string) string {
		rest, ok := strings.CutPrefix(path, internal)
		if !ok {
			return ""
		}
		parts := strings.Split(rest, "/")
		for _, layer := range layers {
			if len(parts) >= 2 && parts[0] == layer {
				return parts[1]
			}
		}
		return ""
	}
	for _, layer := range layers {
		dir := filepath.Join(root, "internal", layer)
		err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			rel, _ := filepath.Rel(filepath.Join(root, "internal"), filepath.Dir(p))
			own := serviceOf(internal + filepath.ToSlash(rel))
			f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if other := serviceOf(path); other != "" && other != own {
					t.Errorf("%s imports %s: only %q's own packages may import %q's", p, path, other, other)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
