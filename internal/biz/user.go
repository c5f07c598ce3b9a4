package biz

import (
	"context"
	"fmt"
)

// User is a customer who can place orders.
type User struct {
	ID    string
	Name  string
	Email string
}

// Profile is a user together with the orders they placed.
type Profile struct {
	User   *User
	Orders []*Order
}

// UserRepo stores users. Get returns ErrUserNotFound for an unknown ID.
type UserRepo interface {
	Create(ctx context.Context, u *User) (*User, error)
	Get(ctx context.Context, id string) (*User, error)
}

// OrderHistory lists a user's orders; in the user service it is a client of
// the order service.
type OrderHistory interface {
	ListOrders(ctx context.Context, userID string) ([]*Order, error)
}

// UserUsecase is the user service's business logic.
type UserUsecase struct {
	users  UserRepo
	orders OrderHistory
}

// NewUserUsecase returns a UserUsecase over its repository and the order history.
func NewUserUsecase(users UserRepo, orders OrderHistory) *UserUsecase {
	return &UserUsecase{users: users, orders: orders}
}

// CreateUser stores a new user; the repository assigns the ID.
func (uc *UserUsecase) CreateUser(ctx context.Context, name, email string) (*User, error) {
	if name == "" || email == "" {
		return nil, fmt.Errorf("create user: %w", ErrInvalidUser)
	}
	u, err := uc.users.Create(ctx, &User{Name: name, Email: email})
	if err != nil {
		return nil, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// GetUser returns the user with the given ID.
func (uc *UserUsecase) GetUser(ctx context.Context, id string) (*User, error) {
	u, err := uc.users.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get user %s: %w", id, err)
	}
	return u, nil
}

// GetUserProfile returns the user and their orders. Without the order
// history the profile would be a lie, so an order-service failure fails the call.
func (uc *UserUsecase) GetUserProfile(ctx context.Context, id string) (*Profile, error) {
	u, err := uc.GetUser(ctx, id)
	if err != nil {
		return nil, err
	}
	orders, err := uc.orders.ListOrders(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("list orders of user %s: %w", id, err)
	}
	return &Profile{User: u, Orders: orders}, nil
}
