package devstack

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, root string, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestServicesAreTheCmdsWithAnInjector(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root,
		"cmd/user/wire.go", "configs/user.yaml",
		"cmd/payment/wire.go", "configs/payment.yaml",
		"cmd/devstack/main.go", // a tool, not a service
		"deploy/nomad/user.nomad.hcl", "deploy/nomad/payment.nomad.hcl",
	)
	got, err := Services(root)
	if err != nil || !slices.Equal(got, []string{"payment", "user"}) {
		t.Fatalf("Services = %v, %v; want [payment user]", got, err)
	}
	jobs, err := JobSpecs(root)
	if err != nil || !slices.Equal(jobs, []string{"payment", "user"}) {
		t.Fatalf("JobSpecs = %v, %v; want [payment user]", jobs, err)
	}

	writeFiles(t, root, "cmd/billing/wire.go")
	if _, err := Services(root); err == nil || !strings.Contains(err.Error(), "configs/billing.yaml") {
		t.Fatalf("a service without a config: %v, want an error naming configs/billing.yaml", err)
	}
	if _, err := Services(t.TempDir()); err == nil {
		t.Fatal("an empty tree has services")
	}
}

// The repository's own services are the two demo ones until a user adds more.
func TestServicesOfThisRepository(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Services(root)
	if err != nil || !slices.Contains(got, "user") || !slices.Contains(got, "order") {
		t.Fatalf("Services = %v, %v; want user and order among them", got, err)
	}
}

// Callees are the services a config's clients name, each once, sorted;
// a target that is not discovery:///<service> is an error naming it.
func TestCallees(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := Callees(write("a.yaml", "service: {name: a}\nclients:\n  order: {target: discovery:///order}\n  user: {target: 'discovery:///user'}\n  again: {target: discovery:///order}\n"))
	if err != nil || !slices.Equal(got, []string{"order", "user"}) {
		t.Errorf("Callees = %v, %v; want [order user]", got, err)
	}
	if got, err = Callees(write("none.yaml", "service: {name: a}\n")); err != nil || len(got) != 0 {
		t.Errorf("no clients: %v, %v", got, err)
	}
	if _, err = Callees(write("bad.yaml", "clients: {order: {target: '127.0.0.1:9000'}}\n")); err == nil || !strings.Contains(err.Error(), "clients.order.target") {
		t.Errorf("fixed address: %v, want an error naming clients.order.target", err)
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for svc, want := range map[string][]string{"user": {"order"}, "order": {"user"}} {
		if got, err := Callees(filepath.Join(root, "configs", svc+".yaml")); err != nil || !slices.Equal(got, want) {
			t.Errorf("configs/%s.yaml: %v, %v; want %v", svc, got, err, want)
		}
	}
}
