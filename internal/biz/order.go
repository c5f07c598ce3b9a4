package biz

import (
	"context"
	"fmt"
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

// OrderRepo stores orders. CreateOnce is atomic per idempotency key: the first
// call with a key stores o and returns it with created=true; every later call
// with that key, while the key is remembered, returns the stored order with
// created=false and stores nothing.
type OrderRepo interface {
	CreateOnce(ctx context.Context, key string, o *Order) (stored *Order, created bool, err error)
	Get(ctx context.Context, id string) (*Order, error)
	ListByUser(ctx context.Context, userID string) ([]*Order, error)
}

// UserDirectory tells whether a buyer exists; in the order service it is a
// client of the user service and returns ErrUserNotFound for an unknown ID.
type UserDirectory interface {
	GetUser(ctx context.Context, id string) (*User, error)
}

// OrderUsecase is the order service's business logic.
type OrderUsecase struct {
	orders OrderRepo
	users  UserDirectory
}

// NewOrderUsecase returns an OrderUsecase over its repository and the user directory.
func NewOrderUsecase(orders OrderRepo, users UserDirectory) *OrderUsecase {
	return &OrderUsecase{orders: orders, users: users}
}

// CreateOrder places o for an existing buyer, once per idempotency key: a
// repeat with the same body returns the first order, a repeat with another
// body fails with ErrIdempotencyKeyReused.
func (uc *OrderUsecase) CreateOrder(ctx context.Context, key string, o *Order) (*Order, error) {
	if o.Quantity <= 0 {
		return nil, fmt.Errorf("create order: %w", ErrInvalidQuantity)
	}
	if _, err := uc.users.GetUser(ctx, o.UserID); err != nil {
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
func (uc *OrderUsecase) GetOrder(ctx context.Context, id string) (*Order, error) {
	o, err := uc.orders.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get order %s: %w", id, err)
	}
	return o, nil
}

// ListOrders returns the orders of one user, oldest first. A user with no
// orders gets an empty list, not an error: the order service does not own users.
func (uc *OrderUsecase) ListOrders(ctx context.Context, userID string) ([]*Order, error) {
	orders, err := uc.orders.ListByUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("list orders of user %s: %w", userID, err)
	}
	return orders, nil
}
