// Package order serves order.v1.OrderService: it turns proto requests into
// calls of the order use cases and maps the order service's domain errors
// to the codes and reasons of its API; every failure no domain owns is
// mapped by the shared internal/service. It imports its own biz package
// (aliased orderbiz) and never the user service's. Importers that meet
// another "order" package alias it ordersvc.
package order

import (
	"context"
	"fmt"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/google/wire"
	"google.golang.org/grpc/codes"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	orderbiz "github.com/rampart-go/rampart/internal/biz/order"
	"github.com/rampart-go/rampart/internal/service"
)

// ProviderSet builds the order service's gRPC handlers.
var ProviderSet = wire.NewSet(NewService, NewAPI)

// Service serves order.v1.OrderService.
type Service struct {
	orderv1.UnimplementedOrderServiceServer

	uc  *orderbiz.Usecase
	log *log.Helper
}

var _ orderv1.OrderServiceServer = (*Service)(nil)

var errorTable = []service.DomainError{
	{Target: orderbiz.ErrNotFound, Code: codes.NotFound, Reason: orderv1.ErrorReason_ORDER_NOT_FOUND.String()},
	// The buyer is named in the request, so an unknown buyer is NotFound
	// with its own reason rather than a missing order.
	{Target: orderbiz.ErrBuyerNotFound, Code: codes.NotFound, Reason: orderv1.ErrorReason_BUYER_NOT_FOUND.String(), Field: "user_id"},
	{Target: orderbiz.ErrIdempotencyKeyReused, Code: codes.AlreadyExists, Reason: orderv1.ErrorReason_IDEMPOTENCY_KEY_REUSED.String(), Field: "idempotency_key"},
	{Target: orderbiz.ErrInvalidQuantity, Code: codes.InvalidArgument, Reason: orderv1.ErrorReason_INVALID_ARGUMENT.String(), Field: "quantity"},
	{Target: service.ErrPageToken, Code: codes.InvalidArgument, Reason: orderv1.ErrorReason_INVALID_ARGUMENT.String(), Field: "page_token"},
}

// NewService returns the handlers over the order use cases.
func NewService(uc *orderbiz.Usecase, logger log.Logger) *Service {
	return &Service{uc: uc, log: log.NewHelper(logger)}
}

// NewAPI serves the handlers as order.v1.OrderService, over gRPC and HTTP/JSON.
func NewAPI(s *Service) service.API {
	return service.API{
		Desc:    &orderv1.OrderService_ServiceDesc,
		Impl:    s,
		Gateway: orderv1.RegisterOrderServiceHandler,
	}
}

// CreateOrder places an order once per idempotency key.
func (s *Service) CreateOrder(ctx context.Context, req *orderv1.CreateOrderRequest) (*orderv1.CreateOrderReply, error) {
	o, err := s.uc.CreateOrder(ctx, req.GetIdempotencyKey(), &orderbiz.Order{
		UserID: req.GetUserId(), Item: req.GetItem(), Quantity: req.GetQuantity(),
	})
	if err != nil {
		return nil, service.ToStatus(ctx, s.log, err, errorTable)
	}
	return &orderv1.CreateOrderReply{Order: toProto(o)}, nil
}

// GetOrder returns one order.
func (s *Service) GetOrder(ctx context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderReply, error) {
	o, err := s.uc.GetOrder(ctx, req.GetId())
	if err != nil {
		return nil, service.ToStatus(ctx, s.log, err, errorTable)
	}
	return &orderv1.GetOrderReply{Order: toProto(o)}, nil
}

// ListOrders returns one page of a user's orders. The page token is the
// keyset position of the page before, bound to the user_id it was issued
// for (service.EncodePageToken).
func (s *Service) ListOrders(ctx context.Context, req *orderv1.ListOrdersRequest) (*orderv1.ListOrdersReply, error) {
	filters := listFilters(req.GetUserId())
	after, err := service.DecodePageToken(req.GetPageToken(), filters)
	if err != nil {
		return nil, service.ToStatus(ctx, s.log, fmt.Errorf("list orders of user %s: %w", req.GetUserId(), err), errorTable)
	}
	page, err := s.uc.ListOrders(ctx, req.GetUserId(), int(req.GetPageSize()), after)
	if err != nil {
		return nil, service.ToStatus(ctx, s.log, err, errorTable)
	}
	reply := &orderv1.ListOrdersReply{Orders: make([]*orderv1.Order, 0, len(page.Orders))}
	for _, o := range page.Orders {
		reply.Orders = append(reply.Orders, toProto(o))
	}
	if page.Next != 0 {
		reply.NextPageToken = service.EncodePageToken(filters, page.Next)
	}
	return reply, nil
}

// listFilters spells ListOrders' filters for its page tokens.
func listFilters(userID string) string { return "user_id=" + userID }

func toProto(o *orderbiz.Order) *orderv1.Order {
	return &orderv1.Order{Id: o.ID, UserId: o.UserID, Item: o.Item, Quantity: o.Quantity}
}
