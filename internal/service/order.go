package service

import (
	"context"

	"github.com/go-kratos/kratos/v2/log"
	"google.golang.org/grpc/codes"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	"github.com/rampart-go/rampart/internal/biz"
)

// OrderService serves order.v1.OrderService.
type OrderService struct {
	orderv1.UnimplementedOrderServiceServer

	uc  *biz.OrderUsecase
	log *log.Helper
}

var _ orderv1.OrderServiceServer = (*OrderService)(nil)

var orderErrors = []domainError{
	{target: biz.ErrOrderNotFound, code: codes.NotFound, reason: orderv1.ErrorReason_ORDER_NOT_FOUND.String()},
	// The buyer is named in the request, so an unknown buyer is NotFound
	// with its own reason rather than a missing order.
	{target: biz.ErrUserNotFound, code: codes.NotFound, reason: orderv1.ErrorReason_BUYER_NOT_FOUND.String(), field: "user_id"},
	{target: biz.ErrIdempotencyKeyReused, code: codes.AlreadyExists, reason: orderv1.ErrorReason_IDEMPOTENCY_KEY_REUSED.String(), field: "idempotency_key"},
	{target: biz.ErrInvalidQuantity, code: codes.InvalidArgument, reason: orderv1.ErrorReason_INVALID_ARGUMENT.String(), field: "quantity"},
}

// NewOrderService returns the handlers over the order use cases.
func NewOrderService(uc *biz.OrderUsecase, logger log.Logger) *OrderService {
	return &OrderService{uc: uc, log: log.NewHelper(logger)}
}

// NewOrderAPI serves the handlers as order.v1.OrderService.
func NewOrderAPI(s *OrderService) API {
	return API{Desc: &orderv1.OrderService_ServiceDesc, Impl: s}
}

// CreateOrder places an order once per idempotency key.
func (s *OrderService) CreateOrder(ctx context.Context, req *orderv1.CreateOrderRequest) (*orderv1.CreateOrderReply, error) {
	o, err := s.uc.CreateOrder(ctx, req.GetIdempotencyKey(), &biz.Order{
		UserID: req.GetUserId(), Item: req.GetItem(), Quantity: req.GetQuantity(),
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, err, orderErrors)
	}
	return &orderv1.CreateOrderReply{Order: orderToProto(o)}, nil
}

// GetOrder returns one order.
func (s *OrderService) GetOrder(ctx context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderReply, error) {
	o, err := s.uc.GetOrder(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err, orderErrors)
	}
	return &orderv1.GetOrderReply{Order: orderToProto(o)}, nil
}

// ListOrders returns a user's orders.
func (s *OrderService) ListOrders(ctx context.Context, req *orderv1.ListOrdersRequest) (*orderv1.ListOrdersReply, error) {
	orders, err := s.uc.ListOrders(ctx, req.GetUserId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err, orderErrors)
	}
	reply := &orderv1.ListOrdersReply{Orders: make([]*orderv1.Order, 0, len(orders))}
	for _, o := range orders {
		reply.Orders = append(reply.Orders, orderToProto(o))
	}
	return reply, nil
}

func orderToProto(o *biz.Order) *orderv1.Order {
	return &orderv1.Order{Id: o.ID, UserId: o.UserID, Item: o.Item, Quantity: o.Quantity}
}
