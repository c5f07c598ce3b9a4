package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// TestConsulDownAtStart starts a user instance while no Consul agent runs at
// its address: it must stay up and say so, then register by itself within
// 5 s of an agent appearing there.
func TestConsulDownAtStart(t *testing.T) {
	const (
		downFor       = time.Second // how long the instance runs without Consul
		maxRegister   = 5 * time.Second
		downLogNeedle = "retrying in background"
	)
	ctx := devstacktest.Context(t, 60*time.Second)
	isolateConsul(t)
	bin := buildUser(t, ctx)
	port := devstacktest.Port(t)
	consulAddr := "127.0.0.1:" + strconv.Itoa(port)
	logDir := t.TempDir()

	// Plaintext: in mtls an instance without its agent has no certificate
	// yet and serves only its side port, which TestMTLSConsulDownAtStart
	// covers.
	p := startInstance(t, ctx, devstack.ServiceSpec{
		Name: "user", Binary: bin, ConsulAddr: consulAddr, LogDir: logDir,
		Env: []string{"RAMPART_SECURITY_MODE=" + devstack.SecurityPlaintext},
	}, "without Consul")

	// The instance says clearly that Consul is missing, and keeps running.
	started := time.Now()
	logged, err := waitLogLine(ctx, p.LogPath, downLogNeedle, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sleepCtx(ctx, downFor-time.Since(started))
	t.Logf("logged while Consul was down: %s", logged)
	if code := httpStatus(t, ctx, "http://"+p.HTTPAddr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz without Consul = %d, want 200", code)
	}
	select {
	case <-p.Exited():
		t.Fatalf("instance exited without Consul: %v", p.ExitErr())
	default:
	}

	agent := devstacktest.Consul(t, devstack.WithConsulHTTPPort(port))
	appeared := time.Now()
	consul := consulClient(t, agent.Addr())
	wctx, cancel := context.WithTimeout(ctx, maxRegister)
	defer cancel()
	if _, err := devstack.WaitPassing(wctx, consul, "user", 1); err != nil {
		t.Fatalf("after the agent appeared: %v", err)
	}
	t.Logf("passing in Consul %s after the agent was ready", time.Since(appeared).Round(time.Millisecond))

	sigtermExitsZero(t, p, "once registered")
}

// httpStatus GETs url and returns the status code.
func httpStatus(t *testing.T, ctx context.Context, url string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// waitLogLine waits up to timeout for a line containing needle in the log
// at path and returns that line.
func waitLogLine(ctx context.Context, path, needle string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		b, _ := os.ReadFile(path)
		for line := range strings.Lines(string(b)) {
			if strings.Contains(line, needle) {
				return strings.TrimSpace(line), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("log %s has no line with %q after %s", path, needle, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestConsulTokenRefused starts user with an ACL token that lacks
// service:write on user: the instance must stay up, serving but not
// registered, and log an error naming the permission; one stopped then
// exits cleanly, and one left running registers by itself once the
// token's policy is fixed.
func TestConsulTokenRefused(t *testing.T) {
	const (
		refusedFor  = 8 * time.Second // the registry's retry backoff tops out at 5 s
		maxRegister = 8 * time.Second
	)
	ctx := devstacktest.Context(t, 2*time.Minute)
	isolateConsul(t)
	bin := buildUser(t, ctx)
	agent := devstacktest.Consul(t, devstack.WithConsulACL())
	consul := consulClient(t, agent.Addr())
	consul.SetHeaders(map[string][]string{"X-Consul-Token": {agent.ManagementToken()}})
	token, err := agent.PolicyToken(ctx, "rampart-user", `node_prefix "" { policy = "read" }`)
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	start := func() *devstack.ServiceProc {
		return startInstance(t, ctx, devstack.ServiceSpec{
			Name: "user", Binary: bin, ConsulAddr: agent.Addr(), LogDir: logDir,
			Env: []string{"CONSUL_HTTP_TOKEN=" + token, "RAMPART_SQLITE_PATH=" + filepath.Join(logDir, "user.db")},
		}, "with a token without service:write")
	}

	stopped, waiting := start(), start()
	started := time.Now()
	for _, p := range []*devstack.ServiceProc{stopped, waiting} {
		line, err := waitLogLine(ctx, p.LogPath, "the ACL token needs service:write on user", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s", filepath.Base(p.LogPath), line)
		if !strings.Contains(line, "ERROR") {
			t.Errorf("the refusal is not logged as an error: %s", line)
		}
		if code := httpStatus(t, ctx, "http://"+p.HTTPAddr+"/healthz"); code != http.StatusOK {
			t.Fatalf("/healthz while refused = %d, want 200", code)
		}
	}
	if entries, err := passing(ctx, consul, "user"); err != nil || len(entries) != 0 {
		t.Fatalf("user instances in Consul while refused: %d, %v; want 0", len(entries), err)
	}

	took := sigtermExitsZero(t, stopped, "while refused")
	t.Logf("TIMING SIGTERM -> exit 0 while refused: %s", took.Round(time.Millisecond))

	// Refused long enough for the retries to reach their longest interval,
	// so the time measured below is the worst case's.
	sleepCtx(ctx, refusedFor-time.Since(started))
	if err := agent.UpdatePolicy(ctx, "rampart-user", devstack.ServicePolicyRules("user")); err != nil {
		t.Fatal(err)
	}
	fixed := time.Now()
	wctx, cancel := context.WithTimeout(ctx, maxRegister)
	defer cancel()
	if _, err := devstack.WaitPassing(wctx, consul, "user", 1); err != nil {
		t.Fatalf("after the policy was fixed: %v", err)
	}
	t.Logf("TIMING passing in Consul %s after the policy was fixed", time.Since(fixed).Round(time.Millisecond))
	select {
	case <-waiting.Exited():
		t.Fatalf("instance exited: %v", waiting.ExitErr())
	default:
	}
	sigtermExitsZero(t, waiting, "once registered")
}
