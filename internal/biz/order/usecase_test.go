package order_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	orderbiz "github.com/rampart-go/rampart/internal/biz/order"
	orderdata "github.com/rampart-go/rampart/internal/data/order"
)

// buyers is a Buyers that knows a fixed set of user IDs.
type buyers map[string]bool

func (b buyers) Check(_ context.Context, id string) error {
	if !b[id] {
		return fmt.Errorf("user service: %w", orderbiz.ErrBuyerNotFound)
	}
	return nil
}

func TestCreateOrderIsIdempotent(t *testing.T) {
	ctx := context.Background()
	uc := orderbiz.NewUsecase(orderdata.NewStore(), buyers{"u1": true})

	first, err := uc.CreateOrder(ctx, "key", &orderbiz.Order{UserID: "u1", Item: "pen", Quantity: 1})
	if err != nil {
		t.Fatal(err)
	}
	again, err := uc.CreateOrder(ctx, "key", &orderbiz.Order{UserID: "u1", Item: "pen", Quantity: 1})
	if err != nil || again.ID != first.ID {
		t.Fatalf("repeat = %+v, %v; want order %s", again, err, first.ID)
	}
	_, err = uc.CreateOrder(ctx, "key", &orderbiz.Order{UserID: "u1", Item: "pen", Quantity: 2})
	if !errors.Is(err, orderbiz.ErrIdempotencyKeyReused) {
		t.Fatalf("same key, other body: %v, want ErrIdempotencyKeyReused", err)
	}
	if list, _ := uc.ListOrders(ctx, "u1"); len(list) != 1 {
		t.Fatalf("%d orders, want 1", len(list))
	}
	if o, err := uc.GetOrder(ctx, first.ID); err != nil || o.ID != first.ID {
		t.Fatalf("GetOrder = %+v, %v", o, err)
	}
	if _, err := uc.GetOrder(ctx, "nothing"); !errors.Is(err, orderbiz.ErrNotFound) {
		t.Fatalf("unknown order: %v, want ErrNotFound", err)
	}
}

func TestCreateOrderChecksBuyerFirst(t *testing.T) {
	ctx := context.Background()
	store := orderdata.NewStore()
	uc := orderbiz.NewUsecase(store, buyers{})
	_, err := uc.CreateOrder(ctx, "key", &orderbiz.Order{UserID: "ghost", Item: "pen", Quantity: 1})
	if !errors.Is(err, orderbiz.ErrBuyerNotFound) {
		t.Fatalf("unknown buyer: %v, want ErrBuyerNotFound", err)
	}
	if n, _ := store.RememberedKeys(ctx); n != 0 {
		t.Fatalf("a rejected order used up its key (%d keys held)", n)
	}
	_, err = uc.CreateOrder(ctx, "key2", &orderbiz.Order{UserID: "ghost", Item: "pen", Quantity: 0})
	if !errors.Is(err, orderbiz.ErrInvalidQuantity) {
		t.Fatalf("quantity 0: %v, want ErrInvalidQuantity", err)
	}
}
