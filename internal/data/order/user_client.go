package order

import (
	"context"

	"google.golang.org/grpc"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	orderbiz "github.com/rampart-go/rampart/internal/biz/order"
	"github.com/rampart-go/rampart/internal/data"
)

// UserConn is the order service's connection to the user service.
type UserConn struct{ *grpc.ClientConn }

// NewUserConn dials clients.user; the cleanup closes the connection.
func NewUserConn(d data.Dialer) (*UserConn, func(), error) {
	conn, cleanup, err := d.Dial("user")
	if err != nil {
		return nil, nil, err
	}
	return &UserConn{conn}, cleanup, nil
}

// buyers answers orderbiz.Buyers by asking the user service.
type buyers struct {
	client userv1.UserServiceClient
}

// userReasons maps the user service's reasons to the order service's own
// errors: to an order, an unknown user is an unknown buyer.
var userReasons = map[string]error{
	userv1.ErrorReason_USER_NOT_FOUND.String(): orderbiz.ErrBuyerNotFound,
}

// NewBuyers returns an orderbiz.Buyers backed by the user service.
func NewBuyers(conn *UserConn) orderbiz.Buyers {
	return &buyers{client: userv1.NewUserServiceClient(conn)}
}

// Check asks the user service for the user; the reply's content is not
// needed, only whether it came.
func (b *buyers) Check(ctx context.Context, userID string) error {
	if _, err := b.client.GetUser(ctx, &userv1.GetUserRequest{Id: userID}); err != nil {
		return data.PeerError("user service", err, userReasons)
	}
	return nil
}
