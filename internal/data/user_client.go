package data

import (
	"context"

	"google.golang.org/grpc"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/biz"
)

// UserConn is the order service's connection to the user service.
type UserConn struct{ *grpc.ClientConn }

// NewUserConn dials clients.user; the cleanup closes the connection.
func NewUserConn(d Dialer) (*UserConn, func(), error) {
	conn, cleanup, err := d.Dial("user")
	if err != nil {
		return nil, nil, err
	}
	return &UserConn{conn}, cleanup, nil
}

// userDirectory answers biz.UserDirectory by asking the user service.
type userDirectory struct {
	client userv1.UserServiceClient
}

var userReasons = map[string]error{
	userv1.ErrorReason_USER_NOT_FOUND.String(): biz.ErrUserNotFound,
}

// NewUserDirectory returns a biz.UserDirectory backed by the user service.
func NewUserDirectory(conn *UserConn) biz.UserDirectory {
	return &userDirectory{client: userv1.NewUserServiceClient(conn)}
}

func (d *userDirectory) GetUser(ctx context.Context, id string) (*biz.User, error) {
	reply, err := d.client.GetUser(ctx, &userv1.GetUserRequest{Id: id})
	if err != nil {
		return nil, peerError("user service", err, userReasons)
	}
	u := reply.GetUser()
	return &biz.User{ID: u.GetId(), Name: u.GetName(), Email: u.GetEmail()}, nil
}
