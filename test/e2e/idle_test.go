package e2e

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/connectivity"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// TestIdleChannelSurvivesAConsulOutage: a client channel goes idle (gRPC
// stops its discovery watch), then Consul goes away. The next call builds a
// new watch that cannot reach Consul; it must still reach the instances
// that were known, which are up, instead of waiting out its deadline.
func TestIdleChannelSurvivesAConsulOutage(t *testing.T) {
	const idle = 500 * time.Millisecond
	ctx := devstacktest.Context(t, 2*time.Minute)
	s := startStack(t, ctx, 2, 0)
	conn := rampartConn(t, s, "user", "{target: discovery:///user, idle_timeout: "+idle.String()+"}")
	users := userv1.NewUserServiceClient(conn)
	created, err := users.CreateUser(ctx, &userv1.CreateUserRequest{Name: "Idle", Email: "idle@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetUser().GetId()

	for st := conn.GetState(); st != connectivity.Idle; st = conn.GetState() {
		wctx, cancel := context.WithTimeout(ctx, 20*idle)
		changed := conn.WaitForStateChange(wctx, st)
		cancel()
		if !changed {
			t.Fatalf("channel still %s %s after its last call; idle_timeout is %s", st, 20*idle, idle)
		}
	}
	if err = s.Consul.Stop(); err != nil {
		t.Fatal(err)
	}

	callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	start := time.Now()
	got, err := users.GetUser(callCtx, &userv1.GetUserRequest{Id: id})
	if err != nil {
		t.Fatalf("GetUser on an idle channel with Consul down: %v after %s; the instances are up", err, time.Since(start).Round(time.Millisecond))
	}
	if got.GetUser().GetId() != id {
		t.Fatalf("GetUser = %v, want user %s", got.GetUser(), id)
	}
	t.Logf("idle channel, Consul down: GetUser answered in %s", time.Since(start).Round(time.Millisecond))
}
