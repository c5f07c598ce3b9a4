package service

import (
	"context"

	"github.com/go-kratos/kratos/v2/log"
	"google.golang.org/grpc/codes"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/biz"
)

// UserService serves user.v1.UserService.
type UserService struct {
	userv1.UnimplementedUserServiceServer

	uc  *biz.UserUsecase
	log *log.Helper
}

var _ userv1.UserServiceServer = (*UserService)(nil)

var userErrors = []domainError{
	{target: biz.ErrUserNotFound, code: codes.NotFound, reason: userv1.ErrorReason_USER_NOT_FOUND.String()},
	{target: biz.ErrInvalidUser, code: codes.InvalidArgument, reason: userv1.ErrorReason_INVALID_ARGUMENT.String()},
}

// NewUserService returns the handlers over the user use cases.
func NewUserService(uc *biz.UserUsecase, logger log.Logger) *UserService {
	return &UserService{uc: uc, log: log.NewHelper(logger)}
}

// NewUserAPI serves the handlers as user.v1.UserService.
func NewUserAPI(s *UserService) API {
	return API{Desc: &userv1.UserService_ServiceDesc, Impl: s}
}

// CreateUser stores a new user.
func (s *UserService) CreateUser(ctx context.Context, req *userv1.CreateUserRequest) (*userv1.CreateUserReply, error) {
	u, err := s.uc.CreateUser(ctx, req.GetName(), req.GetEmail())
	if err != nil {
		return nil, toStatus(ctx, s.log, err, userErrors)
	}
	return &userv1.CreateUserReply{User: userToProto(u)}, nil
}

// GetUser returns one user.
func (s *UserService) GetUser(ctx context.Context, req *userv1.GetUserRequest) (*userv1.GetUserReply, error) {
	u, err := s.uc.GetUser(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err, userErrors)
	}
	return &userv1.GetUserReply{User: userToProto(u)}, nil
}

// GetUserProfile returns a user with their orders, asking the order service.
func (s *UserService) GetUserProfile(ctx context.Context, req *userv1.GetUserProfileRequest) (*userv1.GetUserProfileReply, error) {
	p, err := s.uc.GetUserProfile(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err, userErrors)
	}
	reply := &userv1.GetUserProfileReply{User: userToProto(p.User)}
	for _, o := range p.Orders {
		reply.Orders = append(reply.Orders, &userv1.ProfileOrder{Id: o.ID, Item: o.Item, Quantity: o.Quantity})
	}
	return reply, nil
}

func userToProto(u *biz.User) *userv1.User {
	return &userv1.User{Id: u.ID, Name: u.Name, Email: u.Email}
}
