package user_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/rampart-go/rampart/internal/biz"
	userbiz "github.com/rampart-go/rampart/internal/biz/user"
	userdata "github.com/rampart-go/rampart/internal/data/user"
)

// history is an OrderHistory over a fixed list per user, or an outage.
type history struct {
	orders map[string][]*userbiz.Order
	err    error
}

func (h history) ListOrders(_ context.Context, userID string) ([]*userbiz.Order, error) {
	if h.err != nil {
		return nil, h.err
	}
	return h.orders[userID], nil
}

func TestUserProfileJoinsOrders(t *testing.T) {
	ctx := context.Background()
	repo := userdata.NewStore()
	u, err := userbiz.NewUsecase(repo, nil).CreateUser(ctx, "Ada", "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	orders := history{orders: map[string][]*userbiz.Order{u.ID: {{ID: "o1", Item: "pen", Quantity: 1}}}}
	p, err := userbiz.NewUsecase(repo, orders).GetUserProfile(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.User.Name != "Ada" || len(p.Orders) != 1 || p.Orders[0].Item != "pen" {
		t.Fatalf("profile = %+v", p)
	}

	outage := fmt.Errorf("order service: %w", biz.ErrDependencyUnavailable)
	_, err = userbiz.NewUsecase(repo, history{err: outage}).GetUserProfile(ctx, u.ID)
	if !errors.Is(err, biz.ErrDependencyUnavailable) {
		t.Fatalf("order outage: %v, want ErrDependencyUnavailable", err)
	}
	if _, err := userbiz.NewUsecase(repo, nil).GetUser(ctx, "nobody"); !errors.Is(err, userbiz.ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	if _, err := userbiz.NewUsecase(repo, nil).CreateUser(ctx, "", "x@y"); !errors.Is(err, userbiz.ErrInvalid) {
		t.Fatalf("blank name: %v", err)
	}
}
