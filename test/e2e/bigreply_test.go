package e2e

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	_ "github.com/rampart-go/rampart/internal/data" // the sqlite driver order uses
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// bigList is the big-list case: a user with 20,000 orders of
// 190-character items, whose whole list is about 5.5 MB, over gRPC's 4 MiB
// receive limit.
const (
	bigList     = 20000
	bigItemLen  = 190
	grpcMaxRecv = 4 << 20
	listOrders  = "/order.v1.OrderService/ListOrders"
)

// insertOrders writes n orders of buyer straight into order's database in
// one transaction and returns their IDs, oldest first: 20,000 CreateOrder
// calls would cost the suite over a minute and prove nothing more here. The
// service created the schema at start.
func insertOrders(t *testing.T, ctx context.Context, s *devstack.Stack, buyer string, n int) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+s.SQLitePath("order")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	item := strings.Repeat("i", bigItemLen)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
		if _, err = tx.ExecContext(ctx, `INSERT INTO orders (id, user_id, item, quantity) VALUES (?, ?, ?, 1)`, ids[i], buyer, item); err != nil {
			t.Fatal(err)
		}
	}
	if err = tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestReplyOfAUserWith20000OrdersIsBounded: the profile of a user whose
// whole list is over gRPC's limit answers, with the first 50 orders, in one
// ListOrders call, and its token reads every other order from ListOrders,
// each page far under the limit. Before pagination this profile failed
// with REPLY_TOO_LARGE; that path, a reply over the client's own receive
// limit, stays tested in internal/data/user
// (TestReplyOverTheReceiveLimitIsNotADependencyOutage).
func TestReplyOfAUserWith20000OrdersIsBounded(t *testing.T) {
	ctx := devstacktest.Context(t, 3*time.Minute)
	s := startStack(t, ctx, 1, 1)
	buyer := newBuyer(t, ctx, s)
	want := insertOrders(t, ctx, s, buyer, bigList)

	orderProcs := s.Instances("order")
	before := serverAttempts(t, ctx, orderProcs, listOrders)
	clients := dialDemo(t, ctx, s)
	start := time.Now()
	profile, err := clients.User.GetUserProfile(ctx, &userv1.GetUserProfileRequest{Id: buyer})
	if err != nil {
		t.Fatalf("GetUserProfile for a user with %d orders: %v", bigList, err)
	}
	took := time.Since(start)
	if n := serverAttempts(t, ctx, orderProcs, listOrders) - before; n != 1 {
		t.Errorf("order answered ListOrders %d times for one profile, want 1", n)
	}
	if len(profile.GetOrders()) != 50 || profile.GetOrders()[0].GetId() != want[0] || profile.GetOrdersNextPageToken() == "" {
		t.Fatalf("profile shows %d orders, next token %q; want the first 50 and a token for the rest",
			len(profile.GetOrders()), profile.GetOrdersNextPageToken())
	}
	t.Logf("GetUserProfile for a user with %d orders: %d orders, %d bytes, in %s", bigList, len(profile.GetOrders()), proto.Size(profile), took)

	// The rest, as a user of the profile reads it: from the profile's token on.
	got := make([]string, 0, bigList)
	for _, o := range profile.GetOrders() {
		got = append(got, o.GetId())
	}
	req := &orderv1.ListOrdersRequest{UserId: buyer, PageSize: 1000, PageToken: profile.GetOrdersNextPageToken()}
	pages, largest := 0, 0
	for req.PageToken != "" {
		page, err := clients.Order.ListOrders(ctx, req)
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		pages++
		largest = max(largest, proto.Size(page))
		for _, o := range page.GetOrders() {
			got = append(got, o.GetId())
		}
		req.PageToken = page.GetNextPageToken()
	}
	if !equalIDs(t, got, want) {
		return
	}
	if largest > grpcMaxRecv/4 {
		t.Errorf("the largest page is %d bytes, want far under gRPC's %d", largest, grpcMaxRecv)
	}
	t.Logf("the other %d orders in %d pages of 1000, the largest %d bytes", bigList-50, pages, largest)
}

// equalIDs reports whether got lists want's orders exactly once each, in
// order, and says where they first differ.
func equalIDs(t *testing.T, got, want []string) bool {
	t.Helper()
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("order %d is %s, want %s", i, got[i], want[i])
			return false
		}
	}
	if len(got) != len(want) {
		t.Errorf("listed %d orders, want %d", len(got), len(want))
		return false
	}
	return true
}
