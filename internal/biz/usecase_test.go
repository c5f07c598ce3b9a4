package biz_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/rampart-go/rampart/internal/biz"
	"github.com/rampart-go/rampart/internal/data"
)

// users is a UserDirectory that knows a fixed set of IDs.
type users map[string]bool

func (u users) GetUser(_ context.Context, id string) (*biz.User, error) {
	if !u[id] {
		return nil, fmt.Errorf("user service: %w", biz.ErrUserNotFound)
	}
	return &biz.User{ID: id}, nil
}

type failingHistory struct{ err error }

func (f failingHistory) ListOrders(context.Context, string) ([]*biz.Order, error) { return nil, f.err }

func TestCreateOrderIsIdempotent(t *testing.T) {
	ctx := context.Background()
	uc := biz.NewOrderUsecase(data.NewOrderStore(), users{"u1": true})

	first, err := uc.CreateOrder(ctx, "key", &biz.Order{UserID: "u1", Item: "pen", Quantity: 1})
	if err != nil {
		t.Fatal(err)
	}
	again, err := uc.CreateOrder(ctx, "key", &biz.Order{UserID: "u1", Item: "pen", Quantity: 1})
	if err != nil || again.ID != first.ID {
		t.Fatalf("repeat = %+v, %v; want order %s", again, err, first.ID)
	}
	_, err = uc.CreateOrder(ctx, "key", &biz.Order{UserID: "u1", Item: "pen", Quantity: 2})
	if !errors.Is(err, biz.ErrIdempotencyKeyReused) {
		t.Fatalf("same key, other body: %v, want ErrIdempotencyKeyReused", err)
	}
	if list, _ := uc.ListOrders(ctx, "u1"); len(list) != 1 {
		t.Fatalf("%d orders, want 1", len(list))
	}
}

func TestCreateOrderChecksBuyerFirst(t *testing.T) {
	ctx := context.Background()
	store := data.NewOrderStore()
	uc := biz.NewOrderUsecase(store, users{})
	_, err := uc.CreateOrder(ctx, "key", &biz.Order{UserID: "ghost", Item: "pen", Quantity: 1})
	if !errors.Is(err, biz.ErrUserNotFound) {
		t.Fatalf("unknown buyer: %v, want ErrUserNotFound", err)
	}
	if n, _ := store.RememberedKeys(ctx); n != 0 {
		t.Fatalf("a rejected order used up its key (%d keys held)", n)
	}
	_, err = uc.CreateOrder(ctx, "key2", &biz.Order{UserID: "ghost", Item: "pen", Quantity: 0})
	if !errors.Is(err, biz.ErrInvalidQuantity) {
		t.Fatalf("quantity 0: %v, want ErrInvalidQuantity", err)
	}
}

func TestUserProfileJoinsOrders(t *testing.T) {
	ctx := context.Background()
	orders := data.NewOrderStore()
	userRepo := data.NewUserStore()
	u, err := biz.NewUserUsecase(userRepo, nil).CreateUser(ctx, "Ada", "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err = orders.CreateOnce(ctx, "k", &biz.Order{UserID: u.ID, Item: "pen", Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := biz.NewUserUsecase(userRepo, biz.NewOrderUsecase(orders, nil)).GetUserProfile(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.User.Name != "Ada" || len(p.Orders) != 1 || p.Orders[0].Item != "pen" {
		t.Fatalf("profile = %+v", p)
	}

	outage := fmt.Errorf("order service: %w", biz.ErrDependencyUnavailable)
	_, err = biz.NewUserUsecase(userRepo, failingHistory{outage}).GetUserProfile(ctx, u.ID)
	if !errors.Is(err, biz.ErrDependencyUnavailable) {
		t.Fatalf("order outage: %v, want ErrDependencyUnavailable", err)
	}
	if _, err := biz.NewUserUsecase(userRepo, nil).GetUser(ctx, "nobody"); !errors.Is(err, biz.ErrUserNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	if _, err := biz.NewUserUsecase(userRepo, nil).CreateUser(ctx, "", "x@y"); !errors.Is(err, biz.ErrInvalidUser) {
		t.Fatalf("blank name: %v", err)
	}
}
