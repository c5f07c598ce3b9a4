package user

import (
	"context"

	"google.golang.org/grpc"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userbiz "github.com/rampart-go/rampart/internal/biz/user"
	"github.com/rampart-go/rampart/internal/data"
)

// OrderConn is the user service's connection to the order service.
type OrderConn struct{ *grpc.ClientConn }

// NewOrderConn dials clients.order; the cleanup closes the connection.
func NewOrderConn(d data.Dialer) (*OrderConn, func(), error) {
	conn, cleanup, err := d.Dial("order")
	if err != nil {
		return nil, nil, err
	}
	return &OrderConn{conn}, cleanup, nil
}

// orderHistory answers userbiz.OrderHistory by asking the order service.
type orderHistory struct {
	client orderv1.OrderServiceClient
}

// NewOrderHistory returns a userbiz.OrderHistory backed by the order service.
func NewOrderHistory(conn *OrderConn) userbiz.OrderHistory {
	return &orderHistory{client: orderv1.NewOrderServiceClient(conn)}
}

// FirstOrders asks the order service for one page of limit orders and maps
// its records onto the user service's view of an order; the order service's
// next_page_token is passed through untouched, for the caller to continue
// with. ListOrders has no domain failure (an unknown user has no orders),
// so every error is the order service's and no reason is mapped.
func (h *orderHistory) FirstOrders(ctx context.Context, userID string, limit int) (*userbiz.OrderPage, error) {
	reply, err := h.client.ListOrders(ctx, &orderv1.ListOrdersRequest{UserId: userID, PageSize: int32(min(max(limit, 1), orderMaxPageSize))})
	if err != nil {
		return nil, data.PeerError("order service", err, nil)
	}
	page := &userbiz.OrderPage{Orders: make([]*userbiz.Order, 0, len(reply.GetOrders())), NextPageToken: reply.GetNextPageToken()}
	for _, o := range reply.GetOrders() {
		page.Orders = append(page.Orders, &userbiz.Order{ID: o.GetId(), Item: o.GetItem(), Quantity: o.GetQuantity()})
	}
	return page, nil
}

// orderMaxPageSize is the largest page order.v1.ListOrders answers.
const orderMaxPageSize = 1000
