package order_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

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
	if page, _ := uc.ListOrders(ctx, "u1", 0, 0); len(page.Orders) != 1 || page.Next != 0 {
		t.Fatalf("ListOrders = %+v, want one order and no next page", page)
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

func TestPageSize(t *testing.T) {
	for _, tc := range []struct{ requested, want int }{
		{0, orderbiz.DefaultPageSize},
		{1, 1},
		{orderbiz.MaxPageSize, orderbiz.MaxPageSize},
		{orderbiz.MaxPageSize + 1, orderbiz.MaxPageSize},
	} {
		if got := orderbiz.PageSize(tc.requested); got != tc.want {
			t.Errorf("PageSize(%d) = %d, want %d", tc.requested, got, tc.want)
		}
	}
}

// Pages hold the asked number of orders, oldest first, and Next is set
// exactly when another page exists, also when the last page is full.
func TestListOrdersPages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	uc := orderbiz.NewUsecase(orderdata.NewStore(), buyers{"u1": true})
	var want []string
	for i := range 6 {
		o, err := uc.CreateOrder(ctx, fmt.Sprint("key", i), &orderbiz.Order{UserID: "u1", Item: "pen", Quantity: 1})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, o.ID)
	}
	var got []string
	var sizes []int
	for after, pages := int64(0), 0; ; pages++ {
		if pages > len(want) {
			t.Fatalf("more than %d pages: Next never ends", pages)
		}
		page, err := uc.ListOrders(ctx, "u1", 3, after)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(page.Orders))
		for _, o := range page.Orders {
			got = append(got, o.ID)
		}
		if page.Next == 0 {
			break
		}
		after = page.Next
	}
	if !slices.Equal(got, want) || !slices.Equal(sizes, []int{3, 3}) {
		t.Fatalf("pages of sizes %v holding %v, want [3 3] holding %v", sizes, got, want)
	}
}
