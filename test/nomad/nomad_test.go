package nomad

import (
	"context"
	"fmt"
	"io"
	"net/http"
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

// TestJobsServeTheDemo submits every job and checks that Nomad, not the
// processes, registered exactly two passing instances of each with a gRPC
// check, and that the demo flow crosses both services through them.
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
			var grpcCheck bool
			for _, c := range e.Checks {
				grpcCheck = grpcCheck || (c.ServiceID == e.Service.ID && c.Type == "grpc")
			}
			if !grpcCheck {
				t.Errorf("%s: instance %s has no gRPC check: %+v", job, e.Service.ID, e.Checks)
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
