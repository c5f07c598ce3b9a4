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
