// Package user serves user.v1.UserService: it turns proto requests into
// calls of the user use cases and maps the user service's domain errors to
// the codes and reasons of its API; every failure no domain owns is mapped
// by the shared internal/service. It imports its own biz package (aliased
// userbiz) and never the order service's. Importers that meet another
// "user" package alias it usersvc.
package user

import (
	"context"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/google/wire"
	"google.golang.org/grpc/codes"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	userbiz "github.com/rampart-go/rampart/internal/biz/user"
	"github.com/rampart-go/rampart/internal/service"
)

// ProviderSet builds the user service's gRPC handlers.
var ProviderSet = wire.NewSet(NewService, NewAPI)

// Service serves user.v1.UserService.
type Service struct {
	userv1.UnimplementedUserServiceServer

	uc  *userbiz.Usecase
	log *log.Helper
}

var _ userv1.UserServiceServer = (*Service)(nil)

var errorTable = []service.DomainError{
	{Target: userbiz.ErrNotFound, Code: codes.NotFound, Reason: userv1.ErrorReason_USER_NOT_FOUND.String()},
	{Target: userbiz.ErrInvalid, Code: codes.InvalidArgument, Reason: userv1.ErrorReason_INVALID_ARGUMENT.String()},
}

// NewService returns the handlers over the user use cases.
func NewService(uc *userbiz.Usecase, logger log.Logger) *Service {
	return &Service{uc: uc, log: log.NewHelper(logger)}
}

// NewAPI serves the handlers as user.v1.UserService, over gRPC and HTTP/JSON.
func NewAPI(s *Service) service.API {
	return service.API{
		Desc:    &userv1.UserService_ServiceDesc,
		Impl:    s,
		Gateway: userv1.RegisterUserServiceHandler,
	}
}

// CreateUser stores a new user.
func (s *Service) CreateUser(ctx context.Context, req *userv1.CreateUserRequest) (*userv1.CreateUserReply, error) {
	u, err := s.uc.CreateUser(ctx, req.GetName(), req.GetEmail())
	if err != nil {
		return nil, service.ToStatus(ctx, s.log, err, errorTable)
	}
	return &userv1.CreateUserReply{User: toProto(u)}, nil
}

// GetUser returns one user.
func (s *Service) GetUser(ctx context.Context, req *userv1.GetUserRequest) (*userv1.GetUserReply, error) {
	u, err := s.uc.GetUser(ctx, req.GetId())
	if err != nil {
		return nil, service.ToStatus(ctx, s.log, err, errorTable)
	}
	return &userv1.GetUserReply{User: toProto(u)}, nil
}

// GetUserProfile returns a user with their first orders, asking the order
// service, and the token that reads the rest from it.
func (s *Service) GetUserProfile(ctx context.Context, req *userv1.GetUserProfileRequest) (*userv1.GetUserProfileReply, error) {
	p, err := s.uc.GetUserProfile(ctx, req.GetId())
	if err != nil {
		return nil, service.ToStatus(ctx, s.log, err, errorTable)
	}
	reply := &userv1.GetUserProfileReply{User: toProto(p.User), OrdersNextPageToken: p.MoreOrders}
	for _, o := range p.Orders {
		reply.Orders = append(reply.Orders, &userv1.ProfileOrder{Id: o.ID, Item: o.Item, Quantity: o.Quantity})
	}
	return reply, nil
}

func toProto(u *userbiz.User) *userv1.User {
	return &userv1.User{Id: u.ID, Name: u.Name, Email: u.Email}
}
