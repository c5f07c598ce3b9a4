package e2e

import (
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/rpc"
)

// TestPageThroughTwentyThousandOrders reads the big list with ListOrders
// through two order instances (each page lands on either): every order
// exactly once, oldest first, with the default page size and the largest;
// a page token that was altered, or that is replayed for another user, is
// InvalidArgument naming page_token, and a negative page size names
// page_size.
func TestPageThroughTwentyThousandOrders(t *testing.T) {
	ctx := devstacktest.Context(t, 3*time.Minute)
	s := startStack(t, ctx, 1, 2)
	buyer, other := newBuyer(t, ctx, s), newBuyer(t, ctx, s)
	want := insertOrders(t, ctx, s, buyer, bigList)
	clients := dialDemo(t, ctx, s)

	var firstToken string
	for _, tc := range []struct {
		name           string
		size, pageWant int32
	}{
		{"default page size", 0, 50},
		{"above the maximum", 5000, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &orderv1.ListOrdersRequest{UserId: buyer, PageSize: tc.size}
			got := make([]string, 0, bigList)
			pages, largest := 0, 0
			start := time.Now()
			for {
				page, err := clients.Order.ListOrders(ctx, req)
				if err != nil {
					t.Fatalf("page %d: %v", pages+1, err)
				}
				pages++
				largest = max(largest, proto.Size(page))
				if n := int32(len(page.GetOrders())); page.GetNextPageToken() != "" && n != tc.pageWant {
					t.Fatalf("page %d holds %d orders, want %d", pages, n, tc.pageWant)
				}
				for _, o := range page.GetOrders() {
					got = append(got, o.GetId())
				}
				if firstToken == "" {
					firstToken = page.GetNextPageToken()
				}
				if req.PageToken = page.GetNextPageToken(); req.PageToken == "" {
					break
				}
			}
			equalIDs(t, got, want)
			t.Logf("%d orders in %d pages (page_size %d), the largest %d bytes, in %s", len(got), pages, tc.size, largest, time.Since(start))
		})
	}

	altered := []byte(firstToken)
	altered[len(altered)/2] ^= 1
	for _, tc := range []struct {
		name  string
		req   *orderv1.ListOrdersRequest
		field string
	}{
		{"altered token", &orderv1.ListOrdersRequest{UserId: buyer, PageToken: string(altered)}, "page_token"},
		{"token of another user", &orderv1.ListOrdersRequest{UserId: other, PageToken: firstToken}, "page_token"},
		{"negative page size", &orderv1.ListOrdersRequest{UserId: buyer, PageSize: -1}, "page_size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := clients.Order.ListOrders(ctx, tc.req)
			checkError(t, err, codes.InvalidArgument, rpc.ReasonInvalidArgument)
			checkField(t, err, tc.field)
		})
	}
}

// checkField asserts that err names field as the invalid one.
func checkField(t *testing.T, err error, field string) {
	t.Helper()
	if got := kerrors.FromError(err).Metadata["field"]; got != field {
		t.Errorf("field = %q (%v), want %q", got, err, field)
	}
}
