package service

import (
	"context"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"

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
	{biz.ErrOrderNotFound, func(msg string) *kerrors.Error {
		return kerrors.NotFound(orderv1.ErrorReason_ORDER_NOT_FOUND.String(), msg)
	}},
	// The buyer is part of the request, so an unknown buyer is the caller's
	// mistake about this order, not a missing order.
	{biz.ErrUserNotFound, func(msg string) *kerrors.Error {
		return kerrors.NotFound(orderv1.ErrorReason_BUYER_NOT_FOUND.String(), msg)
	}},
	{biz.ErrIdempotencyKeyReused, func(msg string) *kerrors.Error {
		return kerrors.Conflict(orderv1.ErrorReason_IDEMPOTENCY_KEY_REUSED.String(), msg)
	}},
	{biz.ErrInvalidQuantity, func(msg string) *kerrors.Error {
		return kerrors.BadRequest(orderv1.ErrorReason_INVALID_ARGUMENT.String(), msg).
			WithMetadata(map[string]string{"field": "quantity"})
	}},
}

// NewOrderService returns the handlers over the order use cases.
func NewOrderService(uc *biz.OrderUsecase, logger log.Logger) *OrderService {
	return &OrderService{uc: uc, log: log.NewHelper(logger)}
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
