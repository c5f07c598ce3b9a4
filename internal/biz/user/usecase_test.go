package user_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/biz"
	userbiz "github.com/rampart-go/rampart/internal/biz/user"
	userdata "github.com/rampart-go/rampart/internal/data/user"
)

// history is an OrderHistory over a fixed list per user, or an outage.
type history struct {
	orders map[string][]*userbiz.Order
	err    error
}

// FirstOrders answers like the order service: at most limit orders, and
// a token when there are more.
func (h history) FirstOrders(_ context.Context, userID string, limit int) (*userbiz.OrderPage, error) {
	if h.err != nil {
		return nil, h.err
	}
	all := h.orders[userID]
	if len(all) <= limit {
		return &userbiz.OrderPage{Orders: all}, nil
	}
	return &userbiz.OrderPage{Orders: all[:limit], NextPageToken: "token-after-" + all[limit-1].ID}, nil
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
	if p.User.Name != "Ada" || len(p.Orders) != 1 || p.Orders[0].Item != "pen" || p.MoreOrders != "" {
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

// A profile shows the first ProfileOrders orders and the token for the
// rest, however many orders the user has.
func TestUserProfileIsBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	repo := userdata.NewStore()
	u, err := userbiz.NewUsecase(repo, nil).CreateUser(ctx, "Ada", "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{userbiz.ProfileOrders, userbiz.ProfileOrders + 1, 20000} {
		all := make([]*userbiz.Order, n)
		for i := range all {
			all[i] = &userbiz.Order{ID: fmt.Sprint("o", i), Item: "pen", Quantity: 1}
		}
		orders := history{orders: map[string][]*userbiz.Order{u.ID: all}}
		p, err := userbiz.NewUsecase(repo, orders).GetUserProfile(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		more := n > userbiz.ProfileOrders
		if len(p.Orders) != min(n, userbiz.ProfileOrders) || p.Orders[0].ID != "o0" || (p.MoreOrders != "") != more {
			t.Fatalf("%d orders: profile shows %d from %s, more=%q; want %d from o0, more=%v",
				n, len(p.Orders), p.Orders[0].ID, p.MoreOrders, min(n, userbiz.ProfileOrders), more)
		}
	}
}
