package order

import (
	"context"
	"errors"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/biz"
	orderbiz "github.com/rampart-go/rampart/internal/biz/order"
)

// userService answers GetUser with a fixed error, or a user when it is nil.
type userService struct {
	userv1.UserServiceClient
	err error
}

func (u userService) GetUser(_ context.Context, in *userv1.GetUserRequest, _ ...grpc.CallOption) (*userv1.GetUserReply, error) {
	if u.err != nil {
		return nil, u.err
	}
	return &userv1.GetUserReply{User: &userv1.User{Id: in.GetId()}}, nil
}

// The user service's reasons become the order service's own errors, with
// the text order has always answered with; its outages stay outages.
func TestBuyersMapTheUserServiceReasons(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := (&buyers{client: userService{}}).Check(ctx, "u1"); err != nil {
		t.Fatalf("known buyer: %v", err)
	}
	notFound := kerrors.NotFound(userv1.ErrorReason_USER_NOT_FOUND.String(), "get user u1: user not found")
	err := (&buyers{client: userService{err: notFound}}).Check(ctx, "u1")
	if !errors.Is(err, orderbiz.ErrBuyerNotFound) || err.Error() != "user service: user not found" {
		t.Fatalf("unknown buyer: %v, want ErrBuyerNotFound reading %q", err, "user service: user not found")
	}
	down := status.Error(codes.Unavailable, "connection refused")
	if err := (&buyers{client: userService{err: down}}).Check(ctx, "u1"); !errors.Is(err, biz.ErrDependencyUnavailable) {
		t.Fatalf("user service down: %v, want ErrDependencyUnavailable", err)
	}
}
