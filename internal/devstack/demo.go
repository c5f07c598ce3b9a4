package devstack

import (
	"context"
	"fmt"
	"io"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/google/uuid"
	"github.com/hashicorp/consul/api"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/data"
	"github.com/rampart-go/rampart/internal/middleware"
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
	User   userv1.UserServiceClient
	Order  orderv1.OrderServiceClient
	closes []func()
	reg    *consul.Registry
}

// DialDemo dials discovery:///user and discovery:///order through client,
// with the same client chain the services use on each other.
func DialDemo(_ context.Context, client *api.Client) (*DemoClients, error) {
	c := conf.Default()
	c.Clients = map[string]conf.Client{}
	for _, name := range []string{"user", "order"} {
		cl := conf.DefaultClient()
		cl.Target = "discovery:///" + name
		c.Clients[name] = cl
	}
	reg := consul.New(client)
	chains := middleware.NewClients(c, log.NewStdLogger(io.Discard))
	userConn, closeUser, err := data.DialService("user", c, reg, chains)
	if err != nil {
		_ = reg.Close()
		return nil, err
	}
	orderConn, closeOrder, err := data.DialService("order", c, reg, chains)
	if err != nil {
		closeUser()
		_ = reg.Close()
		return nil, err
	}
	return &DemoClients{
		User:   userv1.NewUserServiceClient(userConn),
		Order:  orderv1.NewOrderServiceClient(orderConn),
		closes: []func(){closeUser, closeOrder},
		reg:    reg,
	}, nil
}

// Close closes both connections and the registry that fed them.
func (c *DemoClients) Close() {
	for _, closeConn := range c.closes {
		closeConn()
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
