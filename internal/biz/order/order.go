// Package order is the order service's business logic: orders, the
// idempotent create, the repository the data layer implements, and the
// order service's own domain errors. It checks buyers only through the view
// it declares here (Buyers, ErrBuyerNotFound), never through the user
// service's biz package, so the order binary does not link the user domain.
// Importers that meet another "order" package alias it orderbiz.
package order

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/wire"
)

// ProviderSet builds the use cases the order service serves.
var ProviderSet = wire.NewSet(NewUsecase)

// Domain errors. Use cases wrap them with %w; the service layer maps each to
// a gRPC code and reason, and a calling service's data layer maps that
// reason to its own error, so each side speaks its own domain.
var (
	// ErrNotFound: no order has the given ID.
	ErrNotFound = errors.New("order not found")
	// ErrBuyerNotFound: the user an order names does not exist. Its text is
	// the user service's words, which callers have always read in the reply
	// ("check buyer <id>: user service: user not found").
	ErrBuyerNotFound = errors.New("user not found")
	// ErrInvalidQuantity: an order line must have a positive quantity.
	ErrInvalidQuantity = errors.New("quantity must be positive")
	// ErrIdempotencyKeyReused: the key was first used for a different order.
	ErrIdempotencyKeyReused = errors.New("idempotency key was used for a different order")
)

// Order is one line a user ordered.
type Order struct {
	ID       string
	UserID   string
	Item     string
	Quantity int32
	// Seq is the order's position in the store's insertion order, assigned
	// by the store: positive, unique, and larger for every later order. A
	// list pages by it, so ListByUser sets it; other Repo methods may leave
	// it 0. It is not part of the API.
	Seq int64
}

// sameRequest reports whether o asks for the same thing as other, ignoring
// the ID the store assigned.
func (o *Order) sameRequest(other *Order) bool {
	return o.UserID == other.UserID && o.Item == other.Item && o.Quantity == other.Quantity
}

// Repo stores orders. CreateOnce is atomic per idempotency key: the first
// call with a key stores o and returns it with created=true; every later call
// with that key, while the key is remembered, returns the stored order with
// created=false and stores nothing.
type Repo interface {
	CreateOnce(ctx context.Context, key string, o *Order) (stored *Order, created bool, err error)
	Get(ctx context.Context, id string) (*Order, error)
	// ListByUser returns at most limit orders of userID with Seq > after,
	// by Seq ascending, so a caller pages by passing the last Seq it got
	// (keyset paging: no offset, so an insert between two pages never
	// shifts the next one). after 0 starts at the oldest order. Callers ask
	// for one more than they show to learn whether another page exists.
	ListByUser(ctx context.Context, userID string, limit int, after int64) ([]*Order, error)
}

// Buyers tells whether a buyer exists: Check returns nil for a known user
// ID and ErrBuyerNotFound for an unknown one. In the order service it is a
// client of the user service; the order domain needs no more of a user.
type Buyers interface {
	Check(ctx context.Context, userID string) error
}

// Usecase is the order service's business logic.
type Usecase struct {
	orders Repo
	buyers Buyers
}

// NewUsecase returns a Usecase over its repository and the buyer check.
func NewUsecase(orders Repo, buyers Buyers) *Usecase {
	return &Usecase{orders: orders, buyers: buyers}
}

// CreateOrder places o for an existing buyer, once per idempotency key: a
// repeat with the same body returns the first order, a repeat with another
// body fails with ErrIdempotencyKeyReused.
func (uc *Usecase) CreateOrder(ctx context.Context, key string, o *Order) (*Order, error) {
	if o.Quantity <= 0 {
		return nil, fmt.Errorf("create order: %w", ErrInvalidQuantity)
	}
	if err := uc.buyers.Check(ctx, o.UserID); err != nil {
		return nil, fmt.Errorf("create order: check buyer %s: %w", o.UserID, err)
	}
	stored, created, err := uc.orders.CreateOnce(ctx, key, o)
	if err != nil {
		return nil, fmt.Errorf("create order: %w", err)
	}
	if !created && !stored.sameRequest(o) {
		return nil, fmt.Errorf("create order with key %q: %w", key, ErrIdempotencyKeyReused)
	}
	return stored, nil
}

// GetOrder returns the order with the given ID.
func (uc *Usecase) GetOrder(ctx context.Context, id string) (*Order, error) {
	o, err := uc.orders.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get order %s: %w", id, err)
	}
	return o, nil
}

// Page sizes of ListOrders, in orders. The default keeps a reply small for
// callers that name no size; the maximum keeps the largest reply (1000
// orders of 200-character items, about 0.3 MB) far below gRPC's 4 MiB.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// PageSize is the number of orders a page of the requested size holds: 0
// (none asked) is DefaultPageSize, and more than MaxPageSize is MaxPageSize.
// A negative size is rejected before the use case, as an invalid request.
func PageSize(requested int) int {
	switch {
	case requested <= 0:
		return DefaultPageSize
	case requested > MaxPageSize:
		return MaxPageSize
	}
	return requested
}

// Page is one page of a user's orders, oldest first.
type Page struct {
	Orders []*Order
	// Next is the Seq to pass as after for the following page, or 0 when
	// this page is the last.
	Next int64
}

// ListOrders returns the page of userID's orders after Seq after (0: the
// first page), of PageSize(size) orders at most. A user with no orders gets
// an empty page, not an error: the order service does not own users.
func (uc *Usecase) ListOrders(ctx context.Context, userID string, size int, after int64) (*Page, error) {
	limit := PageSize(size)
	orders, err := uc.orders.ListByUser(ctx, userID, limit+1, after)
	if err != nil {
		return nil, fmt.Errorf("list orders of user %s: %w", userID, err)
	}
	page := &Page{Orders: orders}
	if len(orders) > limit {
		page.Orders = orders[:limit]
		page.Next = orders[limit-1].Seq
	}
	return page, nil
}
