// Package user is the user service's business logic: users, their
// profiles, the repository the data layer implements, and the user
// service's own domain errors. It reads another service's data only through
// the view it declares here (Order, OrderHistory), never through that
// service's biz package, so the user binary does not link the order domain.
// Importers that meet another "user" package alias it userbiz.
package user

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/wire"
)

// ProviderSet builds the use cases the user service serves.
var ProviderSet = wire.NewSet(NewUsecase)

// Domain errors. Use cases wrap them with %w; the service layer maps each to
// a gRPC code and reason, and a calling service's data layer maps that
// reason to its own error, so each side speaks its own domain.
var (
	// ErrNotFound: no user has the given ID.
	ErrNotFound = errors.New("user not found")
	// ErrInvalid: a user needs a name and an email.
	ErrInvalid = errors.New("user needs a name and an email")
)

// User is a customer who can place orders.
type User struct {
	ID    string
	Name  string
	Email string
}

// Order is the user service's view of one order in a profile: what it
// shows, not the order service's whole record.
type Order struct {
	ID       string
	Item     string
	Quantity int32
}

// ProfileOrders is the most orders a profile shows. A profile is bounded
// so that it answers whatever the user has ordered: 50 orders of the
// longest items are about 15 KB, far below gRPC's 4 MiB reply limit, and
// an unbounded one failed on that limit for a user with 20,000 orders.
const ProfileOrders = 50

// Profile is a user together with the first orders they placed.
type Profile struct {
	User *User
	// Orders are the user's first ProfileOrders orders at most, oldest first.
	Orders []*Order
	// MoreOrders is empty when Orders holds all the user's orders; otherwise
	// the order service's page token for the rest (see OrderPage).
	MoreOrders string
}

// OrderPage is the first page of a user's orders, oldest first.
type OrderPage struct {
	Orders []*Order
	// NextPageToken is empty on the last page. Otherwise it is the order
	// service's opaque token for the next page, which a caller passes to
	// that service's ListOrders with the same user to read the rest.
	NextPageToken string
}

// Repo stores users. Get returns ErrNotFound for an unknown ID.
type Repo interface {
	Create(ctx context.Context, u *User) (*User, error)
	Get(ctx context.Context, id string) (*User, error)
}

// OrderHistory lists a user's orders, oldest first; in the user service it
// is a client of the order service. FirstOrders returns the first page of
// at most limit orders (limit between 1 and 1000).
type OrderHistory interface {
	FirstOrders(ctx context.Context, userID string, limit int) (*OrderPage, error)
}

// Usecase is the user service's business logic.
type Usecase struct {
	users  Repo
	orders OrderHistory
}

// NewUsecase returns a Usecase over its repository and the order history.
func NewUsecase(users Repo, orders OrderHistory) *Usecase {
	return &Usecase{users: users, orders: orders}
}

// CreateUser stores a new user; the repository assigns the ID.
func (uc *Usecase) CreateUser(ctx context.Context, name, email string) (*User, error) {
	if name == "" || email == "" {
		return nil, fmt.Errorf("create user: %w", ErrInvalid)
	}
	u, err := uc.users.Create(ctx, &User{Name: name, Email: email})
	if err != nil {
		return nil, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// GetUser returns the user with the given ID.
func (uc *Usecase) GetUser(ctx context.Context, id string) (*User, error) {
	u, err := uc.users.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get user %s: %w", id, err)
	}
	return u, nil
}

// GetUserProfile returns the user, their first ProfileOrders orders and,
// when they have more, the token that reads the rest. Without the order
// history the profile would be a lie, so an order-service failure fails the call.
func (uc *Usecase) GetUserProfile(ctx context.Context, id string) (*Profile, error) {
	u, err := uc.GetUser(ctx, id)
	if err != nil {
		return nil, err
	}
	page, err := uc.orders.FirstOrders(ctx, id, ProfileOrders)
	if err != nil {
		return nil, fmt.Errorf("list orders of user %s: %w", id, err)
	}
	return &Profile{User: u, Orders: page.Orders, MoreOrders: page.NextPageToken}, nil
}
