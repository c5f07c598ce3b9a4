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
	ListByUser(ctx context.Context, userID string) ([]*Order, error)
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

// ListOrders returns the orders of one user, oldest first. A user with no
// orders gets an empty list, not an error: the order service does not own users.
func (uc *Usecase) ListOrders(ctx context.Context, userID string) ([]*Order, error) {
	orders, err := uc.orders.ListByUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("list orders of user %s: %w", userID, err)
	}
	return orders, nil
}
