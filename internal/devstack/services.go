package devstack

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Services lists the services of the repository at repoRoot: every
// cmd/<name> with a wire injector and a configs/<name>.yaml. `make run` and
// `make nomad-up` start what it finds, so a service added by `make
// new-service` joins them without a list to edit.
func Services(repoRoot string) ([]string, error) {
	injectors, err := filepath.Glob(filepath.Join(repoRoot, "cmd", "*", "wire.go"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, inj := range injectors {
		name := filepath.Base(filepath.Dir(inj))
		if _, err := os.Stat(filepath.Join(repoRoot, "configs", name+".yaml")); err != nil {
			return nil, fmt.Errorf("service %s: cmd/%s has no configs/%s.yaml", name, name, name)
		}
		out = append(out, name)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no service under %s (looked for cmd/*/wire.go)", repoRoot)
	}
	sort.Strings(out)
	return out, nil
}

// JobSpecs lists the services with a Nomad job spec, deploy/nomad/<name>.nomad.hcl.
func JobSpecs(repoRoot string) ([]string, error) {
	specs, err := filepath.Glob(filepath.Join(repoRoot, "deploy", "nomad", "*.nomad.hcl"))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(specs))
	for _, s := range specs {
		out = append(out, strings.TrimSuffix(filepath.Base(s), ".nomad.hcl"))
	}
	sort.Strings(out)
	return out, nil
}
