package scaffold

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rampart-go/rampart/internal/conf"
)

// treeState is every file and directory under root with its content, so a
// test can tell whether a failed run left anything behind.
func treeState(t *testing.T, root string) map[string]string {
	t.Helper()
	state := make(map[string]string)
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if e.IsDir() {
			state[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		state[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return state
}

func sameTree(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			t.Errorf("%s is gone", p)
		case a != b:
			t.Errorf("%s changed:\n%s", p, a)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s was left behind", p)
		}
	}
}

// fixture writes a tiny module at a temp root.
func fixture(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

var oldModule = map[string]string{
	"go.mod":                      "module example.com/old/app\n\ngo 1.26\n",
	"cmd/a/main.go":               "package main\n\nimport _ \"example.com/old/app/internal/x\"\n\nfunc main() {}\n",
	"internal/x/x.go":             "// Package x is example.com/old/app's only package.\npackage x\n",
	"api/a/v1/a.proto":            "option go_package = \"example.com/old/app/api/a/v1;v1\";\n",
	"api/a/v1/a.pb.go":            "package v1 // generated, with example.com/old/app inside a raw descriptor\n",
	"docs/notes.md":               "See example.com/old/app-extra, not example.com/old/app.\n",
	"bin/tool":                    "example.com/old/app\x00binary",
	"tools/lint/go.mod":           "module example.com/old/app/tools/lint\n",
	"third_party/README.md":       "nothing to rename\n",
	"configs/a.yaml":              "service:\n  name: a\n",
	".devstack/a.log":             "example.com/old/app\n",
	"internal/x/import_test.go":   "package x\n\nimport _ \"example.com/old/application\"\n",
	"cmd/a/wire_gen.go":           "package main // example.com/old/app, owned by wire\n",
	"deploy/nomad/a.nomad.hcl":    "job \"a\" {}\n",
	"Makefile":                    "MODULE := example.com/old/app\n",
	"internal/x/doc_test_data.go": "package x\n",
}

func TestRenameRewritesWholePathsAndLeavesGeneratedFilesToTheirGenerators(t *testing.T) {
	root := fixture(t, oldModule)
	var ran []string
	fake := func(_ context.Context, _ string, name string, args ...string) error {
		ran = append(ran, name+" "+strings.Join(args, " "))
		return nil
	}
	changed, err := Rename(context.Background(), root, "github.com/acme/shop", WithRunner(fake))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"go.mod":            "module github.com/acme/shop\n\ngo 1.26\n",
		"cmd/a/main.go":     "package main\n\nimport _ \"github.com/acme/shop/internal/x\"\n\nfunc main() {}\n",
		"internal/x/x.go":   "// Package x is github.com/acme/shop's only package.\npackage x\n",
		"api/a/v1/a.proto":  "option go_package = \"github.com/acme/shop/api/a/v1;v1\";\n",
		"docs/notes.md":     "See example.com/old/app-extra, not github.com/acme/shop.\n",
		"tools/lint/go.mod": "module github.com/acme/shop/tools/lint\n",
		"Makefile":          "MODULE := github.com/acme/shop\n",
		// Left alone: generated (regenerated instead), binary, work dirs,
		// and a longer path that merely starts with the old one.
		"api/a/v1/a.pb.go":          oldModule["api/a/v1/a.pb.go"],
		"cmd/a/wire_gen.go":         oldModule["cmd/a/wire_gen.go"],
		"bin/tool":                  oldModule["bin/tool"],
		".devstack/a.log":           oldModule[".devstack/a.log"],
		"internal/x/import_test.go": oldModule["internal/x/import_test.go"],
	}
	for rel, content := range want {
		b, readErr := os.ReadFile(filepath.Join(root, rel))
		if readErr != nil || string(b) != content {
			t.Errorf("%s = %q, %v; want %q", rel, b, readErr, content)
		}
	}
	if len(changed) != 7 {
		t.Errorf("changed %d files (%v), want the 7 that name the path", len(changed), changed)
	}
	if len(ran) != 2 || ran[0] != "make --no-print-directory api generate" || ran[1] != "go build ./..." {
		t.Errorf("ran %q, want the generators then a build", ran)
	}

	// A second run is a no-op: nothing rewritten, nothing run.
	before, ran := treeState(t, root), nil
	changed, err = Rename(context.Background(), root, "github.com/acme/shop", WithRunner(fake))
	if err != nil || len(changed) != 0 || len(ran) != 0 {
		t.Fatalf("second run: changed %v, ran %v, err %v; want nothing", changed, ran, err)
	}
	sameTree(t, before, treeState(t, root))
}

func TestRenameRefusesAMalformedPathBeforeWriting(t *testing.T) {
	for _, bad := range []string{"", "shop", "github.com/acme/", "github.com/acme shop", "../shop", "github.com//shop", "example.com/old/app/sub"} {
		t.Run(bad, func(t *testing.T) {
			root := fixture(t, oldModule)
			before := treeState(t, root)
			never := func(context.Context, string, string, ...string) error {
				t.Error("a command ran for a refused path")
				return nil
			}
			_, err := Rename(context.Background(), root, bad, WithRunner(never))
			if err == nil || !strings.Contains(err.Error(), "module path") {
				t.Fatalf("Rename(%q) = %v, want an error about the module path", bad, err)
			}
			sameTree(t, before, treeState(t, root))
		})
	}
}

func TestRenamePutsEverythingBackWhenAStepFails(t *testing.T) {
	root := fixture(t, oldModule)
	before := treeState(t, root)
	// The generator rewrites a generated file and creates one, then the
	// build fails: both must be undone along with the rewrites.
	failing := func(_ context.Context, dir, name string, _ ...string) error {
		if name == "make" {
			_ = os.WriteFile(filepath.Join(dir, "api/a/v1/a.pb.go"), []byte("regenerated"), 0o644)
			_ = os.WriteFile(filepath.Join(dir, "cmd/a/wire_gen.go"), []byte("regenerated"), 0o644)
			return nil
		}
		return errors.New("build failed")
	}
	_, err := Rename(context.Background(), root, "github.com/acme/shop", WithRunner(failing))
	if err == nil || !strings.Contains(err.Error(), "build failed") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("err = %v, want the build failure and a rollback", err)
	}
	sameTree(t, before, treeState(t, root))
}

func TestCheckServiceName(t *testing.T) {
	root := fixture(t, map[string]string{"go.mod": "module example.com/app\n", "cmd/user/main.go": "package main\n", "configs/order.yaml": ""})
	for _, name := range []string{"", "Payment", "pay_ment", "pay-ment", "1pay", "func", "user", "order", "payment.v1", strings.Repeat("a", 31)} {
		if err := CheckServiceName(root, name); err == nil {
			t.Errorf("CheckServiceName(%q) = nil, want a refusal", name)
		}
	}
	for _, name := range []string{"payment", "shipping2", "a"} {
		if err := CheckServiceName(root, name); err != nil {
			t.Errorf("CheckServiceName(%q) = %v, want nil", name, err)
		}
	}
}

func TestNewServiceWritesNothingOnError(t *testing.T) {
	files := map[string]string{"go.mod": "module example.com/app\n", "cmd/user/wire.go": "package main\n"}
	t.Run("refused name", func(t *testing.T) {
		root := fixture(t, files)
		before := treeState(t, root)
		if _, err := NewService(context.Background(), root, "user", WithRunner(nil)); err == nil {
			t.Fatal("an existing service name was accepted")
		}
		sameTree(t, before, treeState(t, root))
	})
	t.Run("generation fails", func(t *testing.T) {
		root := fixture(t, files)
		before := treeState(t, root)
		failing := func(_ context.Context, dir, _ string, _ ...string) error {
			// protoc wrote its output before wire failed.
			_ = os.WriteFile(filepath.Join(dir, "api/payment/v1/payment.pb.go"), []byte("package v1"), 0o644)
			return errors.New("wire: undefined: paymentbiz.ProviderSet")
		}
		_, err := NewService(context.Background(), root, "payment", WithRunner(failing))
		if err == nil || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("err = %v, want a rollback", err)
		}
		sameTree(t, before, treeState(t, root))
	})
}

func TestNewServiceWritesEveryLayer(t *testing.T) {
	root := fixture(t, map[string]string{"go.mod": "module example.com/app\n"})
	ok := func(context.Context, string, string, ...string) error { return nil }
	if _, err := NewService(context.Background(), root, "payment", WithRunner(ok)); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{
		"api/payment/v1/payment.proto", "api/payment/v1/validate.go",
		"cmd/payment/main.go", "cmd/payment/wire.go",
		"internal/biz/payment/payment.go", "internal/biz/payment/usecase_test.go",
		"internal/data/payment/payment.go", "internal/data/payment/store.go", "internal/data/payment/user_client.go", "internal/data/payment/user_client_test.go",
		"internal/service/payment/payment.go", "internal/service/payment/payment_test.go",
		"configs/payment.yaml", "deploy/nomad/payment.nomad.hcl",
	} {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if strings.Contains(string(b), "{{") {
			t.Errorf("%s has an unrendered template action", rel)
		}
	}
	proto, _ := os.ReadFile(filepath.Join(root, "api/payment/v1/payment.proto"))
	for _, want := range []string{
		`option go_package = "example.com/app/api/payment/v1;v1"`, "service PaymentService", "idempotency_level = IDEMPOTENT",
		"rpc ListPayments(ListPaymentsRequest)", "int32 page_size = 2;", "string page_token = 3;", "string next_page_token = 2;",
	} {
		if !strings.Contains(string(proto), want) {
			t.Errorf("payment.proto lacks %q", want)
		}
	}
}

// The demo services' job specs are the scaffold's template rendered for
// them, so the template cannot fall behind what `make test-nomad` proves.
func TestNomadTemplateRendersTheDemoJobSpecs(t *testing.T) {
	for _, name := range []string{"user", "order"} {
		files, err := RenderService(ServiceData{Module: "github.com/rampart-go/rampart", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		rel := filepath.Join("deploy", "nomad", name+".nomad.hcl")
		committed, err := os.ReadFile(filepath.Join("..", "..", rel))
		if err != nil {
			t.Fatal(err)
		}
		if string(files[rel]) != string(committed) {
			t.Errorf("%s differs from the template rendered for %s: change both together", rel, name)
		}
	}
}

func TestReplacePath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"example.com/a", "x.io/b"},
		{"example.com/a/pkg", "x.io/b/pkg"},
		{`"example.com/a"`, `"x.io/b"`},
		{"example.com/a.", "x.io/b."},
		{"https://example.com/a", "https://x.io/b"},
		{"example.com/a-extra", "example.com/a-extra"},
		{"example.com/ab", "example.com/ab"},
		{"example.com/a.v2", "example.com/a.v2"},
		{"sub.example.com/a", "sub.example.com/a"},
		{"example.com/a example.com/a", "x.io/b x.io/b"},
	}
	for _, tt := range tests {
		if got := string(replacePath([]byte(tt.in), "example.com/a", "x.io/b")); got != tt.want {
			t.Errorf("replacePath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// The rendered config passes the same strict load a service does at start
// (unknown keys are errors), so the template cannot fall behind the schema.
func TestServiceConfigTemplateLoads(t *testing.T) {
	files, err := RenderService(ServiceData{Module: "example.com/app", Name: "payment"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := conf.Parse(files[filepath.Join("configs", "payment.yaml")], func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("configs/payment.yaml: %v", err)
	}
	if c.Service.Name != "payment" || c.Clients["user"].Target != "discovery:///user" || c.Data.Driver != conf.DriverMemory {
		t.Errorf("service %q, clients.user.target %q, data.driver %q; want payment, discovery:///user, memory",
			c.Service.Name, c.Clients["user"].Target, c.Data.Driver)
	}
}
