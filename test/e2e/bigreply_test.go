package e2e

import (
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	_ "github.com/rampart-go/rampart/internal/data" // the sqlite driver order uses
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/rpc"
)

// TestReplyOverTheSizeLimitIsNotADependencyOutage: a user with 20,000 orders
// (items of 190 characters) makes order.ListOrders answer about 5.5 MB, over
// gRPC's 4 MiB receive limit in user's client. GetUserProfile must fail once,
// honestly (ResourceExhausted, REPLY_TOO_LARGE), without reading the list
// again per retry and without calling the healthy order service unavailable.
func TestReplyOverTheSizeLimitIsNotADependencyOutage(t *testing.T) {
	const (
		orders     = 20000
		listOrders = "/order.v1.OrderService/ListOrders"
	)
	ctx := devstacktest.Context(t, 3*time.Minute)
	s := startStack(t, ctx, 1, 1)
	buyer := newBuyer(t, ctx, s)

	// Written straight into order's database in one transaction: 20,000
	// CreateOrder calls would cost the suite over a minute and prove nothing
	// more here. The service created the schema at start.
	db, err := sql.Open("sqlite", "file:"+s.SQLitePath("order")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	item := strings.Repeat("i", 190)
	for range orders {
		if _, err = tx.ExecContext(ctx, `INSERT INTO orders (id, user_id, item, quantity) VALUES (?, ?, ?, 1)`, uuid.NewString(), buyer, item); err != nil {
			t.Fatal(err)
		}
	}
	if err = tx.Commit(); err != nil {
		t.Fatal(err)
	}

	orderProcs := s.Instances("order")
	before := serverAttempts(t, ctx, orderProcs, listOrders)
	clients := dialDemo(t, ctx, consulClient(t, s.ConsulAddr))
	_, err = clients.User.GetUserProfile(ctx, &userv1.GetUserProfileRequest{Id: buyer})
	checkError(t, err, codes.ResourceExhausted, rpc.ReasonReplyTooLarge)
	t.Logf("GetUserProfile for a user with %d orders: %v", orders, err)
	if n := serverAttempts(t, ctx, orderProcs, listOrders) - before; n != 1 {
		t.Errorf("order answered ListOrders %d times for one profile, want 1: a local size limit was retried", n)
	}
	if strings.Contains(err.Error(), "unavailable") {
		t.Errorf("the answer calls the dependency unavailable: %v", err)
	}
}
