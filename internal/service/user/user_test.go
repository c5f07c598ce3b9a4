package user_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/biz"
	userbiz "github.com/rampart-go/rampart/internal/biz/user"
	userdata "github.com/rampart-go/rampart/internal/data/user"
	usersvc "github.com/rampart-go/rampart/internal/service/user"
)

// failingHistory is an order service that is down.
type failingHistory struct{}

func (failingHistory) FirstOrders(context.Context, string, int) (*userbiz.OrderPage, error) {
	return nil, &biz.DependencyError{Dependency: "order service", Err: fmt.Errorf("connection refused")}
}

// The user service's domain errors reach callers with these codes, reasons
// and messages; order's data layer maps USER_NOT_FOUND back, so it is a
// contract, pinned here through the handlers.
func TestHandlersAnswerWithTheUserReasons(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	repo := userdata.NewStore()
	s := usersvc.NewService(userbiz.NewUsecase(repo, failingHistory{}), log.NewStdLogger(io.Discard))
	ada, err := s.CreateUser(ctx, &userv1.CreateUserRequest{Name: "Ada", Email: "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
		msg    string
	}{
		{"unknown user", func() error {
			_, err := s.GetUser(ctx, &userv1.GetUserRequest{Id: "nobody"})
			return err
		}, codes.NotFound, userv1.ErrorReason_USER_NOT_FOUND.String(), "get user nobody: user not found"},
		{"incomplete user", func() error {
			_, err := s.CreateUser(ctx, &userv1.CreateUserRequest{Name: "Ada"})
			return err
		}, codes.InvalidArgument, userv1.ErrorReason_INVALID_ARGUMENT.String(), "create user: user needs a name and an email"},
		{"order service down", func() error {
			_, err := s.GetUserProfile(ctx, &userv1.GetUserProfileRequest{Id: ada.GetUser().GetId()})
			return err
		}, codes.Unavailable, "DEPENDENCY_UNAVAILABLE", "order service is unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != tt.code || kerrors.Reason(err) != tt.reason || status.Convert(err).Message() != tt.msg {
				t.Fatalf("got %v (reason %q), want %v %s %q", err, kerrors.Reason(err), tt.code, tt.reason, tt.msg)
			}
		})
	}
}
