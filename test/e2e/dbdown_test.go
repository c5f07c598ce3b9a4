package e2e

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// TestDatabaseDownAtStart starts an order instance on PostgreSQL while the
// database is down: it must come up and say so, register, answer
// CreateOrder with Unavailable instead of exiting or hanging, and place the
// order once the database is back (its migrations applied in the
// background).
func TestDatabaseDownAtStart(t *testing.T) {
	const (
		downLogNeedle = "database unreachable at start"
		maxRecover    = 15 * time.Second
	)
	ctx := devstacktest.Context(t, 120*time.Second)
	s := startStack(t, ctx, 1, 0)
	bins, err := devstack.BuildServices(ctx, repoRoot(t), t.TempDir(), "order")
	if err != nil {
		t.Fatal(err)
	}
	pg := devstacktest.OwnPostgres(t)
	if err = pg.Halt(); err != nil {
		t.Fatal(err)
	}

	env, err := s.ServiceEnv(ctx, "order") // its token, in mtls
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	p := startInstance(t, ctx, devstack.ServiceSpec{
		Name:       "order",
		Binary:     bins["order"],
		ConsulAddr: s.ConsulAddr,
		Env:        append(env, "RAMPART_DATA_DRIVER=postgres", "DATABASE_URL="+pg.DSN("postgres")),
		LogDir:     logDir,
	}, "with the database down")
	logged, err := waitLogLine(ctx, p.LogPath, downLogNeedle, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("logged while the database was down: %s", logged)
	if _, err = devstack.WaitPassing(ctx, s.Client, "order", 1); err != nil {
		t.Fatalf("order with the database down never passed in Consul: %v", err)
	}

	buyer := newBuyer(t, ctx, s)
	orders := dialDemo(t, ctx, s).Order
	req := &orderv1.CreateOrderRequest{IdempotencyKey: uuid.NewString(), UserId: buyer, Item: "pen", Quantity: 1}
	start := time.Now()
	_, err = orders.CreateOrder(ctx, req)
	checkError(t, err, codes.Unavailable, "DEPENDENCY_UNAVAILABLE")
	t.Logf("CreateOrder before the schema: Unavailable in %s", time.Since(start).Round(time.Millisecond))
	select {
	case <-p.Exited():
		t.Fatalf("order exited with the database down: %v", p.ExitErr())
	default:
	}

	if err = pg.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	for {
		o, err := orders.CreateOrder(ctx, req)
		if err == nil {
			if o.GetOrder().GetUserId() != buyer {
				t.Fatalf("order after recovery = %v", o)
			}
			break
		}
		if status.Code(err) != codes.Unavailable || time.Since(resumed) > maxRecover {
			t.Fatalf("CreateOrder %s after the database came back = %v; want the order within %s",
				time.Since(resumed).Round(time.Millisecond), err, maxRecover)
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	t.Logf("order placed %s after the database came back", time.Since(resumed).Round(time.Millisecond))
	if _, err := waitLogLine(ctx, p.LogPath, "schema order migrated", time.Second); err != nil {
		t.Fatal(err)
	}
}
