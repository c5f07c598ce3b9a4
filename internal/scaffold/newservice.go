package scaffold

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"go/format"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
)

//go:embed templates/service
var serviceTemplates embed.FS

// templateRoot is where the service templates live in serviceTemplates; a
// template's path below it, with NAME replaced by the service name and the
// .tmpl suffix dropped, is where its output goes.
const templateRoot = "templates/service"

// serviceName is what a service name must look like: it becomes a Go
// package (cmd/<name>), a proto package (<name>.v1), a Consul service name
// and a file name, and lower-case letters and digits are valid as all four.
var serviceName = regexp.MustCompile(`^[a-z][a-z0-9]{0,29}$`)

// ServiceData is what the service templates see.
type ServiceData struct {
	Module string // the module path, from go.mod
	Name   string // payment
}

// Pascal is the name as Go and proto type names start it: Payment.
func (d ServiceData) Pascal() string {
	return strings.ToUpper(d.Name[:1]) + d.Name[1:]
}

// CheckServiceName says why name cannot be a new service under root, or
// returns nil.
func CheckServiceName(root, name string) error {
	if !serviceName.MatchString(name) {
		return fmt.Errorf("service name %q: want lower-case letters and digits, starting with a letter, at most 30 (it becomes a Go package, a proto package and a Consul name)", name)
	}
	if token.IsKeyword(name) {
		return fmt.Errorf("service name %q is a Go keyword", name)
	}
	for _, dir := range []string{filepath.Join("cmd", name), filepath.Join("api", name), filepath.Join("configs", name+".yaml")} {
		if _, err := os.Stat(filepath.Join(root, dir)); err == nil {
			return fmt.Errorf("service name %q is taken: %s exists", name, dir)
		}
	}
	return nil
}

// NewService adds the service name to the repository at root: its proto
// API, with its validation rules and HTTP routes declared in it, and what
// `make api` generates from that (gRPC, grpc-gateway handlers, OpenAPI);
// cmd/<name> with its wire injector; its own packages internal/biz/<name>,
// internal/data/<name> and internal/service/<name>; configs/<name>.yaml and
// deploy/nomad/<name>.nomad.hcl. `make run`, `make build` and `make
// generate` find it by convention. It writes nothing when name is refused,
// and puts everything back when a later step (generation, build) fails.
func NewService(ctx context.Context, root, name string, opts ...Option) ([]string, error) {
	o := newOptions(opts)
	if err := CheckServiceName(root, name); err != nil {
		return nil, err
	}
	module, err := ModulePath(root)
	if err != nil {
		return nil, err
	}
	files, err := RenderService(ServiceData{Module: module, Name: name})
	if err != nil {
		return nil, err
	}
	for rel := range files {
		if _, err := os.Stat(filepath.Join(root, rel)); err == nil {
			return nil, fmt.Errorf("service %s: %s exists", name, rel)
		}
	}
	c := newChange(root)
	written := make([]string, 0, len(files))
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		o.log("writing %s", rel)
		if err := c.write(rel, files[rel]); err != nil {
			return nil, undo(c, fmt.Errorf("write %s: %w", rel, err))
		}
		written = append(written, rel)
	}
	api := filepath.Join("api", name, "v1", name)
	expected := []string{
		api + ".pb.go",
		api + "_grpc.pb.go",
		api + ".pb.gw.go",
		api + ".openapi.yaml",
		filepath.Join("cmd", name, "wire_gen.go"),
	}
	if err := regenerate(ctx, c, o, expected...); err != nil {
		return nil, undo(c, fmt.Errorf("new service %s: %w", name, err))
	}
	return append(written, expected...), nil
}

// RenderService renders every service template for d, keyed by the path
// its output takes in the repository. Go files come out gofmt-ed.
func RenderService(d ServiceData) (map[string][]byte, error) {
	out := make(map[string][]byte)
	err := fs.WalkDir(serviceTemplates, templateRoot, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		src, err := serviceTemplates.ReadFile(p)
		if err != nil {
			return err
		}
		tmpl, err := template.New(path.Base(p)).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err = tmpl.Execute(&buf, d); err != nil {
			return err
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(p, templateRoot+"/"), ".tmpl")
		rel = filepath.FromSlash(strings.ReplaceAll(rel, "NAME", d.Name))
		b := buf.Bytes()
		if strings.HasSuffix(rel, ".go") {
			if b, err = format.Source(b); err != nil {
				return fmt.Errorf("template %s: %w", p, err)
			}
		}
		out[rel] = b
		return nil
	})
	return out, err
}
