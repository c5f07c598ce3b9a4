package e2e

import (
	"bytes"
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/rampart-go/rampart/cmd/devstack/demo"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// TestConsulHTTPS runs the demo stack against an agent whose HTTPS API
// wants a client certificate, every process pointed at it by the
// environment only (CONSUL_HTTP_ADDR=https://…, CONSUL_CACERT,
// CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY), as a developer's shell would:
// the instances register, the demo discovers them and its calls are
// served. An instance given another CA, or no client certificate, logs
// an error naming the setting and keeps retrying.
func TestConsulHTTPS(t *testing.T) {
	ctx := devstacktest.Context(t, 3*time.Minute)
	dir := t.TempDir()
	consulTLS(t, ctx, dir, "tls", "ca", "create")
	consulTLS(t, ctx, dir, "tls", "cert", "create", "-server", "-dc", "dc1")
	consulTLS(t, ctx, dir, "tls", "cert", "create", "-client", "-dc", "dc1")
	otherCA := filepath.Join(t.TempDir(), "other")
	consulTLS(t, ctx, filepath.Dir(otherCA), "tls", "ca", "create", "-domain", "other")
	at := func(name string) string { return filepath.Join(dir, name) }

	agent := devstacktest.Consul(t, devstack.WithConsulHTTPS(devstack.ConsulTLS{
		CAFile: at("consul-agent-ca.pem"), CertFile: at("dc1-server-consul-0.pem"), KeyFile: at("dc1-server-consul-0-key.pem"),
		VerifyIncoming: true,
	}))
	t.Setenv(api.HTTPAddrEnvName, agent.HTTPSAddr())
	t.Setenv(api.HTTPCAFile, at("consul-agent-ca.pem"))
	t.Setenv(api.HTTPClientCert, at("dc1-client-consul-0.pem"))
	t.Setenv(api.HTTPClientKey, at("dc1-client-consul-0-key.pem"))

	// StartStack takes the agent from CONSUL_HTTP_ADDR, as make run does,
	// and the instances inherit the variables. It does so only in
	// plaintext: an mtls stack starts an agent of its own with ACLs, whose
	// management token it holds. This test is about the path to Consul;
	// TestMTLS covers the calls between services.
	s := devstacktest.Stack(t, ctx, devstack.StackConfig{RepoRoot: repoRoot(t), Services: demo.Services(1, 1), Security: devstack.SecurityPlaintext})
	if s.Consul != nil || s.ConsulAddr != agent.HTTPSAddr() {
		t.Fatalf("stack uses %s, want the agent at %s", s.ConsulAddr, agent.HTTPSAddr())
	}
	var out bytes.Buffer
	if _, err := demo.Run(ctx, dialDemo(t, ctx, s), &out); err != nil {
		t.Fatalf("demo over Consul's HTTPS API: %v\n%s", err, out.String())
	}

	// Refusals an operator must fix are logged as errors naming the
	// setting, and retried; the instance stays up and stops cleanly.
	for _, tc := range []struct {
		name, needle string
		env          []string
	}{
		{"OtherCA", "check CONSUL_CACERT", []string{api.HTTPCAFile + "=" + filepath.Join(filepath.Dir(otherCA), "other-agent-ca.pem")}},
		{"NoClientCert", "check CONSUL_CLIENT_CERT", []string{api.HTTPClientCert + "=", api.HTTPClientKey + "="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logDir := t.TempDir()
			p := startInstance(t, ctx, devstack.ServiceSpec{
				Name: "user", Binary: s.Bins["user"], ConsulAddr: agent.HTTPSAddr(), LogDir: logDir,
				Env: append(tc.env, "RAMPART_SQLITE_PATH="+filepath.Join(logDir, "user.db")),
			}, tc.name)
			line, err := waitLogLine(ctx, p.LogPath, tc.needle, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("logged: %s", line)
			if !strings.HasPrefix(line, "ERROR") || !strings.Contains(line, "retrying") {
				t.Errorf("want an error that says it is retried: %s", line)
			}
			if code := httpStatus(t, ctx, "http://"+p.HTTPAddr+"/healthz"); code != http.StatusOK {
				t.Fatalf("/healthz = %d, want 200", code)
			}
			sigtermExitsZero(t, p, "while refused")
		})
	}
}

// consulTLS runs bin/consul with args in dir (`consul tls …` writes its
// files there).
func consulTLS(t *testing.T, ctx context.Context, dir string, args ...string) {
	t.Helper()
	bin, err := devstack.EnsureConsulBinary(ctx, repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("consul %v: %v\n%s", args, err, b)
	}
}
