package nomad

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/consul/api"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/cmd/devstack/demo"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// loadRate is the steady load of the failover tests: calls per second,
// half user.GetUser from this test, half order.CreateOrder (which calls
// user.GetUser from an order instance), so both the test's and order's
// view of the user pool are exercised.
const loadRate = 40

// TestJobsServeTheDemo submits every job in mtls mode and checks that
// Nomad, not the processes, registered exactly two passing instances of
// each as the process would itself (the HTTP /readyz check, a grpcs://
// endpoint), and that the demo flow crosses both services through them
// with a certificate.
func TestJobsServeTheDemo(t *testing.T) {
	ctx := devstacktest.Context(t, 10*time.Minute)
	s := startStack(t, ctx)
	consul := consulClient(t, s)

	for _, job := range jobs(t) {
		entries, _, err := consul.Health().Service(job, "", false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 2 {
			t.Fatalf("%s: %d instances in Consul (passing or not), want 2: one registration per allocation", job, len(entries))
		}
		for _, e := range entries {
			// Nomad names its registrations _nomad-task-<alloc>-…; a
			// self-registered instance would be <name>-<uuid>.
			if !strings.HasPrefix(e.Service.ID, "_nomad-task-") {
				t.Errorf("%s: instance %s was not registered by Nomad", job, e.Service.ID)
			}
			// The gRPC port takes only mutual TLS, so Consul checks /readyz
			// on the side port, as a self-registered mtls instance does (the
			// health endpoint leaves the definition out; a passing HTTP
			// check's output names the URL it got).
			var readyCheck bool
			for _, c := range e.Checks {
				readyCheck = readyCheck || (c.ServiceID == e.Service.ID && c.Type == "http" &&
					strings.Contains(c.Output, "GET http://"+e.Service.Meta["http"]+"/readyz"))
			}
			if !readyCheck {
				for _, c := range e.Checks {
					t.Logf("%s: check %s type %q status %s output %q", e.Service.ID, c.Name, c.Type, c.Status, c.Output)
				}
				t.Errorf("%s: instance %s has no HTTP check of /readyz on meta http", job, e.Service.ID)
			}
			want := fmt.Sprintf("grpcs://%s:%d?isSecure=true", e.Service.Address, e.Service.Port)
			if got := e.Service.Meta["endpoint-0"]; got != want {
				t.Errorf("%s: instance %s meta endpoint-0 = %q, want %q", job, e.Service.ID, got, want)
			}
		}
	}

	var out strings.Builder
	demoCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	res, err := demo.Run(demoCtx, dialDemo(t, ctx, consul), &out)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if len(res.Profile.GetOrders()) != 1 || res.Profile.GetOrders()[0].GetId() != res.Order.GetId() {
		t.Fatalf("profile shows orders %v, want the one just placed (%s)", res.Profile.GetOrders(), res.Order.GetId())
	}
	t.Logf("demo:\n%s", out.String())

	// The gateway port the job gives each allocation is registered as meta
	// gateway and serves the API as HTTP/JSON.
	gw, err := demo.Gateway(demoCtx, consul, demo.UserService)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(demoCtx, http.MethodGet, "http://"+gw+"/v1/users/"+res.User.GetId()+"/profile", nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("profile over HTTP at the user gateway %s: %v", gw, err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), res.Order.GetId()) {
		t.Fatalf("GET /v1/users/%s/profile at %s = %d %s (%v), want 200 with order %s",
			res.User.GetId(), gw, resp.StatusCode, body, err, res.Order.GetId())
	}
}

// TestAllocStopUnderLoad stops one user allocation the way an operator
// does (nomad alloc stop) under steady load: Nomad deregisters it, waits
// shutdown_delay, signals it and places a replacement; no call fails.
func TestAllocStopUnderLoad(t *testing.T) {
	ctx := devstacktest.Context(t, 10*time.Minute)
	s := startStack(t, ctx)
	consul := consulClient(t, s)
	clients := dialDemo(t, ctx, consul)
	userID := createUser(t, ctx, clients)

	allocs, err := s.Nomad.Allocs(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	victim := firstRunning(allocs)
	if victim == "" {
		t.Fatalf("no running user allocation in %+v", allocs)
	}

	load := startSteadyLoad(ctx, loadRate, mixedCall(clients, userID))
	time.Sleep(2 * time.Second)
	stopped := time.Now()
	if err = s.Nomad.StopAlloc(ctx, victim); err != nil {
		_ = load.finish()
		t.Fatal(err)
	}
	replaced, err := waitReplaced(ctx, s, consul, "user", []string{victim})
	if err != nil {
		_ = load.finish()
		t.Fatal(err)
	}
	t.Logf("allocation %s stopped; replacement running and passing after %s", victim[:8], replaced.Sub(stopped).Round(100*time.Millisecond))
	time.Sleep(2 * time.Second) // load on the new pool too
	if failed := report(t, "alloc stop", load.finish()); failed != 0 {
		t.Fatalf("%d calls failed while an allocation was stopped and replaced, want 0", failed)
	}
}

// TestRollingUpdateUnderLoad changes the user job's meta, which replaces
// every allocation one at a time (max_parallel = 1, promoted on passing
// checks), under steady load: the deployment succeeds, every new
// allocation is healthy, and no call fails.
func TestRollingUpdateUnderLoad(t *testing.T) {
	ctx := devstacktest.Context(t, 10*time.Minute)
	s := startStack(t, ctx)
	consul := consulClient(t, s)
	clients := dialDemo(t, ctx, consul)
	userID := createUser(t, ctx, clients)

	before, err := s.Nomad.JobVersion(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	load := startSteadyLoad(ctx, loadRate, mixedCall(clients, userID))
	time.Sleep(2 * time.Second)
	start := time.Now()
	if err = s.RunJob(ctx, "user", map[string]string{"revision": "2"}); err != nil {
		_ = load.finish()
		t.Fatal(err)
	}
	d, err := s.Nomad.WaitDeployment(ctx, "user", before+1)
	if err != nil {
		_ = load.finish()
		t.Fatal(err)
	}
	t.Logf("deployment %s of user v%d %s after %s", d.ID[:8], d.JobVersion, d.Status, time.Since(start).Round(100*time.Millisecond))
	if _, err = devstack.WaitPassing(ctx, consul, "user", 2); err != nil {
		_ = load.finish()
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	failed := report(t, "rolling update", load.finish())

	allocs, err := s.Nomad.Allocs(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	var fresh int
	for _, al := range allocs {
		if !al.Running() {
			continue
		}
		if al.JobVersion != d.JobVersion || !al.Healthy() {
			t.Errorf("running allocation %s: version %d healthy %v, want version %d healthy", al.ID[:8], al.JobVersion, al.Healthy(), d.JobVersion)
		}
		fresh++
	}
	if fresh != 2 {
		t.Errorf("%d running user allocations after the update, want 2", fresh)
	}
	if failed != 0 {
		t.Fatalf("%d calls failed during the rolling update, want 0", failed)
	}
}

func createUser(t *testing.T, ctx context.Context, clients *demo.Clients) string {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	created, err := clients.User.CreateUser(cctx, &userv1.CreateUserRequest{Name: "Grace Hopper", Email: "grace@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return created.GetUser().GetId()
}

// mixedCall alternates user.GetUser and order.CreateOrder (a fresh
// idempotency key per call, so each is one order).
func mixedCall(clients *demo.Clients, userID string) func(ctx context.Context, i int) error {
	return func(ctx context.Context, i int) error {
		if i%2 == 0 {
			_, err := clients.User.GetUser(ctx, &userv1.GetUserRequest{Id: userID})
			return err
		}
		_, err := clients.Order.CreateOrder(ctx, &orderv1.CreateOrderRequest{
			IdempotencyKey: uuid.NewString(), UserId: userID, Item: "compiler", Quantity: 1,
		})
		return err
	}
}

func firstRunning(allocs []devstack.NomadAlloc) string {
	for _, al := range allocs {
		if al.Running() {
			return al.ID
		}
	}
	return ""
}

// waitReplaced waits until job has two running allocations, none of them
// in gone, and Consul shows two passing instances; it returns when.
func waitReplaced(ctx context.Context, s *devstack.NomadStack, consul *api.Client, job string, gone []string) (time.Time, error) {
	for {
		allocs, err := s.Nomad.Allocs(ctx, job)
		if err == nil {
			running := 0
			for _, al := range allocs {
				if al.Running() && !slices.Contains(gone, al.ID) {
					running++
				}
			}
			if running == 2 {
				entries, _, err := consul.Health().Service(job, "", true, (&api.QueryOptions{}).WithContext(ctx))
				if err == nil && len(entries) == 2 {
					return time.Now(), nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s allocation not replaced: %w", job, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestJobSpecsInBothModes renders every job (nomad job run -output, no
// agent) in each security_mode and checks that it registers what the
// process registers itself in that mode, that the mode reaches the process
// explicitly, and that a token travels only as a file in the secrets dir.
// The suite's stacks run mtls; this keeps the plaintext path honest.
func TestJobSpecsInBothModes(t *testing.T) {
	ctx := devstacktest.Context(t, 2*time.Minute)
	root, err := devstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	nomadBin, err := devstack.EnsureNomadBinary(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		mode, token                     string
		checkType, checkPort, checkPath string
		endpoint, tokenFile             string
	}{
		{"plaintext", "", "grpc", "grpc", "", "grpc://${NOMAD_ADDR_grpc}?isSecure=false", ""},
		{"mtls", "11111111-2222-4333-8444-555555555555", "http", "http", "/readyz", "grpcs://${NOMAD_ADDR_grpc}?isSecure=true", "${NOMAD_SECRETS_DIR}/consul-token"},
	}
	for _, job := range jobs(t) {
		for _, tt := range tests {
			t.Run(job+"/"+tt.mode, func(t *testing.T) {
				args := []string{
					"job", "run", "-output", "-var", "binary=/bin/" + job, "-var", "config=/c.yaml", "-var", "data_dir=/d",
					"-var", "security_mode=" + tt.mode, filepath.Join(root, "deploy", "nomad", job+".nomad.hcl"),
				}
				cmd := exec.CommandContext(ctx, nomadBin, args...)
				cmd.Env = append(os.Environ(), "NOMAD_VAR_consul_token="+tt.token)
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("nomad %v: %v", args, err)
				}
				var spec jobSpec
				if err := json.Unmarshal(out, &spec); err != nil {
					t.Fatal(err)
				}
				if len(spec.Job.TaskGroups) != 1 || len(spec.Job.TaskGroups[0].Tasks) != 1 || len(spec.Job.TaskGroups[0].Services) != 1 {
					t.Fatalf("want one group with one task and one service: %s", out)
				}
				task := spec.Job.TaskGroups[0].Tasks[0]
				svc := spec.Job.TaskGroups[0].Services[0]
				if len(svc.Checks) != 1 {
					t.Fatalf("%d checks, want 1", len(svc.Checks))
				}
				c := svc.Checks[0]
				if c.Type != tt.checkType || c.PortLabel != tt.checkPort || c.Path != tt.checkPath {
					t.Errorf("check %s on port %s path %q, want %s on %s path %q", c.Type, c.PortLabel, c.Path, tt.checkType, tt.checkPort, tt.checkPath)
				}
				if got := svc.Meta["endpoint-0"]; got != tt.endpoint {
					t.Errorf("meta endpoint-0 = %q, want %q", got, tt.endpoint)
				}
				if got := task.Env["RAMPART_SECURITY_MODE"]; got != tt.mode {
					t.Errorf("RAMPART_SECURITY_MODE = %q, want %q", got, tt.mode)
				}
				if got := task.Env["CONSUL_HTTP_TOKEN_FILE"]; got != tt.tokenFile {
					t.Errorf("CONSUL_HTTP_TOKEN_FILE = %q, want %q", got, tt.tokenFile)
				}
				for k, v := range task.Env {
					if tt.token != "" && strings.Contains(v, tt.token) {
						t.Errorf("the token is in the environment (%s)", k)
					}
				}
				var files []string
				for _, tpl := range task.Templates {
					files = append(files, tpl.DestPath)
					if tpl.DestPath == "secrets/consul-token" && (tpl.EmbeddedTmpl != tt.token || tpl.Perms != "600") {
						t.Errorf("secrets/consul-token renders %q with perms %s, want the token, 600", tpl.EmbeddedTmpl, tpl.Perms)
					}
				}
				if want := tt.tokenFile != ""; slices.Contains(files, "secrets/consul-token") != want {
					t.Errorf("templates %v: secrets/consul-token rendered %v, want %v", files, !want, want)
				}
			})
		}
	}
}

// jobSpec is the part of `nomad job run -output` TestJobSpecsInBothModes
// reads.
type jobSpec struct {
	Job struct {
		TaskGroups []struct {
			Services []struct {
				Meta   map[string]string
				Checks []struct{ Type, PortLabel, Path string }
			}
			Tasks []struct {
				Env       map[string]string
				Templates []struct{ DestPath, EmbeddedTmpl, Perms string }
			}
		}
	}
}
