// Package api_test checks the rules buf.yaml sets for the protos under api/:
// `make buf-check` runs buf breaking against the previous commit, and this
// test shows that the check catches what it is there for.
package api_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBreakingCatchesAChangedFieldNumber renumbers one field, which breaks
// every client built from the old proto (the wire carries numbers, not
// names), and expects buf breaking to refuse it while an untouched copy
// passes.
func TestBreakingCatchesAChangedFieldNumber(t *testing.T) {
	before := copyContract(t)
	unchanged := copyContract(t)
	changed := copyContract(t)
	proto := filepath.Join(changed, "api", "order", "v1", "order.proto")
	src, err := os.ReadFile(proto)
	if err != nil {
		t.Fatal(err)
	}
	const field = "int32 quantity = 4"
	if !strings.Contains(string(src), field) {
		t.Fatalf("%s no longer declares %q: pick another field for this test", proto, field)
	}
	if err = os.WriteFile(proto, []byte(strings.Replace(string(src), field, "int32 quantity = 5", 1)), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := breaking(t, unchanged, before)
	if err != nil {
		t.Fatalf("buf breaking refused an unchanged contract: %v\n%s", err, out)
	}
	out, err = breaking(t, changed, before)
	if err == nil {
		t.Fatalf("buf breaking passed a renumbered field:\n%s", out)
	}
	if !strings.Contains(out, `field "4" with name "quantity"`) {
		t.Fatalf("buf breaking failed without naming the renumbered field:\n%s", out)
	}
	t.Logf("caught:\n%s", out)
}

func breaking(t *testing.T, dir, against string) (string, error) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "go", "tool", "-modfile="+filepath.Join(root, "tools", "buf", "go.mod"),
		"buf", "breaking", dir, "--against", against)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// copyContract copies what buf reads (buf.yaml and the .proto files under
// api/ and third_party/) into a new directory.
func copyContract(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	copyFile(t, filepath.Join("..", "buf.yaml"), filepath.Join(dst, "buf.yaml"))
	for _, tree := range []string{"api", "third_party"} {
		err := filepath.WalkDir(filepath.Join("..", tree), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || filepath.Ext(path) != ".proto" {
				return err
			}
			rel, err := filepath.Rel("..", path)
			if err != nil {
				return err
			}
			copyFile(t, path, filepath.Join(dst, rel))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
