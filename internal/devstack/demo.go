package devstack

import (
	"context"
	"fmt"
	"io"

	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"github.com/google/uuid"
	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/consul"
)

// DemoResult is what one run of the demo flow produced.
type DemoResult struct {
	User    *userv1.User
	Order   *orderv1.Order
	Profile *userv1.GetUserProfileReply
}

// DemoClients reach both services the way a real client would: through
// Consul discovery, never by a fixed address.
type DemoClients struct {
	User  userv1.UserServiceClient
	Order orderv1.OrderServiceClient
	conns []*grpc.ClientConn
	reg   *consul.Registry
}

// DialDemo dials discovery:///user and discovery:///order through client.
func DialDemo(ctx context.Context, client *api.Client) (*DemoClients, error) {
	reg := consul.New(client)
	dial := func(name string) (*grpc.ClientConn, error) {
		return kgrpc.DialInsecure(ctx,
			kgrpc.WithEndpoint("discovery:///"+name),
			kgrpc.WithDiscovery(reg),
			kgrpc.WithPrintDiscoveryDebugLog(false),
		)
	}
	userConn, err := dial("user")
	if err != nil {
		_ = reg.Close()
		return nil, fmt.Errorf("dial user: %w", err)
	}
	orderConn, err := dial("order")
	if err != nil {
		_ = userConn.Close()
		_ = reg.Close()
		return nil, fmt.Errorf("dial order: %w", err)
	}
	return &DemoClients{
		User:  userv1.NewUserServiceClient(userConn),
		Order: orderv1.NewOrderServiceClient(orderConn),
		conns: []*grpc.ClientConn{userConn, orderConn},
		reg:   reg,
	}, nil
}

// Close closes both connections and the registry that fed them.
func (c *DemoClients) Close() {
	for _, conn := range c.conns {
		_ = conn.Close()
	}
	_ = c.reg.Close()
}

// RunDemo runs the flow that crosses both services and writes each step to
// out: create a user, create an order (order asks user whether the buyer
// exists), then fetch the profile (user asks order for the orders).
func RunDemo(ctx context.Context, c *DemoClients, out io.Writer) (*DemoResult, error) {
	created, err := c.User.CreateUser(ctx, &userv1.CreateUserRequest{Name: "Ada Lovelace", Email: "ada@example.com"})
	if err != nil {
		return nil, fmt.Errorf("create user: %w", err)
	}
	u := created.GetUser()
	fmt.Fprintf(out, "1. user.CreateUser      -> id=%s name=%q\n", u.GetId(), u.GetName())

	placed, err := c.Order.CreateOrder(ctx, &orderv1.CreateOrderRequest{
		IdempotencyKey: uuid.NewString(), UserId: u.GetId(), Item: "analytical engine", Quantity: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("create order: %w", err)
	}
	o := placed.GetOrder()
	fmt.Fprintf(out, "2. order.CreateOrder    -> id=%s item=%q (order called user.GetUser)\n", o.GetId(), o.GetItem())

	profile, err := c.User.GetUserProfile(ctx, &userv1.GetUserProfileRequest{Id: u.GetId()})
	if err != nil {
		return nil, fmt.Errorf("get profile: %w", err)
	}
	fmt.Fprintf(out, "3. user.GetUserProfile  -> %s has %d order(s) (user called order.ListOrders)\n",
		profile.GetUser().GetName(), len(profile.GetOrders()))
	return &DemoResult{User: u, Order: o, Profile: profile}, nil
}
