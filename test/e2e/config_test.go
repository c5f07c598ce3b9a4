package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// TestBadConfigExitsNamingTheKey starts the user binary with a broken copy of
// configs/user.yaml: it must exit non-zero at once and say which key is wrong.
func TestBadConfigExitsNamingTheKey(t *testing.T) {
	ctx := devstacktest.Context(t, 60*time.Second)
	root := repoRoot(t)
	bin := buildUser(t, ctx)
	orig, err := os.ReadFile(filepath.Join(root, "configs", "user.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Should the config be accepted after all, the instance must not find a
	// developer's agent: point it at a port where none runs.
	nowhere := "127.0.0.1:" + strconv.Itoa(devstacktest.Port(t))

	tests := []struct {
		name     string
		old, new string // the edit to configs/user.yaml
		want     string // in stderr
	}{
		{"ZeroHealthInterval", "health_interval: 1s", "health_interval: 0s", "registry.consul.health_interval: must be > 0"},
		{"UnknownKey", "\n  grpc:\n", "\n  grcp:\n", "server.grcp: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := bytes.Count(orig, []byte(tt.old)); n != 1 {
				t.Fatalf("configs/user.yaml has %q %d times, want once", tt.old, n)
			}
			path := filepath.Join(t.TempDir(), "user.yaml")
			if err := os.WriteFile(path, bytes.Replace(orig, []byte(tt.old), []byte(tt.new), 1), 0o644); err != nil {
				t.Fatal(err)
			}

			runCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			cmd := exec.CommandContext(runCtx, bin, "-conf", path)
			cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR="+nowhere)
			cmd.WaitDelay = time.Second
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			err := cmd.Run()
			t.Logf("exit after %s: %v; stderr:\n%s", time.Since(start).Round(time.Millisecond), err, stderr.String())
			if runCtx.Err() != nil {
				t.Fatal("still running after 5 s, want an exit at start-up")
			}
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) || exitErr.ExitCode() <= 0 {
				t.Fatalf("exit = %v, want a non-zero exit code", err)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr does not contain %q (stdout: %q)", tt.want, stdout.String())
			}
		})
	}
}
