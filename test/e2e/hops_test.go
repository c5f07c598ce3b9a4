package e2e

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/middleware/faults"
)

// TestGivenUpDependencyIsNotRetriedAcrossHops: a Rampart client → order →
// user, with every user instance failing. Order retries user as far as its
// own policy allows and then answers DEPENDENCY_UNAVAILABLE with a negative
// pushback, so the client does not retry order: attempts reaching user stay
// within calls × order's max attempts instead of multiplying by the
// client's attempts too.
func TestGivenUpDependencyIsNotRetriedAcrossHops(t *testing.T) {
	const (
		calls             = 20
		orderMaxAttempts  = 3 // clients.user.retry.max_attempts in configs/order.yaml
		clientMaxAttempts = 3
		createOrder       = "/order.v1.OrderService/CreateOrder"
	)
	ctx := devstacktest.Context(t, 2*time.Minute)
	s := startStack(t, ctx, 2, 2)
	buyer := newBuyer(t, ctx, s)
	users, orders := s.Instances("user"), s.Instances("order")
	setFaults(t, ctx, users, map[string]faults.Fault{getUser: {Abort: &faults.Abort{Percent: 100, Code: "UNAVAILABLE"}}})
	client := orderv1.NewOrderServiceClient(rampartConn(t, s, "order",
		"{target: discovery:///order, timeout: 10s, retry: {max_attempts: 3}}"))

	userBefore := serverAttempts(t, ctx, users, getUser)
	orderBefore := serverAttempts(t, ctx, orders, createOrder)
	for range calls {
		_, err := client.CreateOrder(ctx, &orderv1.CreateOrderRequest{
			IdempotencyKey: uuid.NewString(), UserId: buyer, Item: "pen", Quantity: 1,
		})
		checkError(t, err, codes.Unavailable, "DEPENDENCY_UNAVAILABLE")
	}
	reachedUser := serverAttempts(t, ctx, users, getUser) - userBefore
	reachedOrder := serverAttempts(t, ctx, orders, createOrder) - orderBefore
	t.Logf("%d calls: %d attempts reached order, %d reached user (limit %d; multiplied it would be up to %d)",
		calls, reachedOrder, reachedUser, calls*orderMaxAttempts, calls*orderMaxAttempts*clientMaxAttempts)
	if reachedOrder != calls {
		t.Errorf("order saw %d CreateOrder attempts for %d calls: the client retried an answer that said not to", reachedOrder, calls)
	}
	if reachedUser > calls*orderMaxAttempts {
		t.Errorf("user saw %d GetUser attempts for %d calls, more than %d: retries multiplied across hops", reachedUser, calls, calls*orderMaxAttempts)
	}
}
