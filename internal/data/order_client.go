package data

import (
	"context"

	"google.golang.org/grpc"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	"github.com/rampart-go/rampart/internal/biz"
)

// OrderConn is the user service's connection to the order service.
type OrderConn struct{ *grpc.ClientConn }

// NewOrderConn dials clients.order; the cleanup closes the connection.
func NewOrderConn(d Dialer) (*OrderConn, func(), error) {
	conn, cleanup, err := d.Dial("order")
	if err != nil {
		return nil, nil, err
	}
	return &OrderConn{conn}, cleanup, nil
}

// orderHistory answers biz.OrderHistory by asking the order service.
type orderHistory struct {
	client orderv1.OrderServiceClient
}

// NewOrderHistory returns a biz.OrderHistory backed by the order service.
func NewOrderHistory(conn *OrderConn) biz.OrderHistory {
	return &orderHistory{client: orderv1.NewOrderServiceClient(conn)}
}

func (h *orderHistory) ListOrders(ctx context.Context, userID string) ([]*biz.Order, error) {
	reply, err := h.client.ListOrders(ctx, &orderv1.ListOrdersRequest{UserId: userID})
	if err != nil {
		return nil, peerError("order service", err, nil)
	}
	out := make([]*biz.Order, 0, len(reply.GetOrders()))
	for _, o := range reply.GetOrders() {
		out = append(out, &biz.Order{ID: o.GetId(), UserID: o.GetUserId(), Item: o.GetItem(), Quantity: o.GetQuantity()})
	}
	return out, nil
}
