package devstack

import (
	"context"
	"fmt"
	"io"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/google/uuid"
	"github.com/hashicorp/consul/api"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/server"
	"github.com/rampart-go/rampart/internal/telemetry"
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
	tracer trace.Tracer
}

// DialDemo dials discovery:///user and discovery:///order through client,
// with the same client chain the services use on each other. With tel, each
// demo step is a trace whose ID RunDemo prints; nil leaves calls untraced.
func DialDemo(_ context.Context, client *api.Client, tel *telemetry.Telemetry) (*DemoClients, error) {
	configs := middleware.ClientConfigs{}
	for _, name := range []string{UserService, OrderService} {
		cl := middleware.DefaultClientConfig()
		cl.Target = "discovery:///" + name
		configs[name] = cl
	}
	server.Setup()
	reg := consul.New(client)
	dialer := server.NewDialer(reg, middleware.NewClients(configs, log.NewStdLogger(io.Discard), tel))
	userConn, closeUser, err := dialer.Dial(UserService)
	if err != nil {
		_ = reg.Close()
		return nil, err
	}
	orderConn, closeOrder, err := dialer.Dial(OrderService)
	if err != nil {
		closeUser()
		_ = reg.Close()
		return nil, err
	}
	tracer := noop.NewTracerProvider().Tracer("")
	if tel != nil {
		tracer = tel.TracerProvider().Tracer("github.com/rampart-go/rampart/internal/devstack")
	}
	return &DemoClients{
		tracer: tracer,
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
// out with its trace ID: create a user, create an order (order asks user
// whether the buyer exists), then fetch the profile (user asks order for
// the orders).
func RunDemo(ctx context.Context, c *DemoClients, out io.Writer) (*DemoResult, error) {
	var res DemoResult
	err := c.step(ctx, out, "user.CreateUser", func(ctx context.Context) (string, error) {
		created, err := c.User.CreateUser(ctx, &userv1.CreateUserRequest{Name: "Ada Lovelace", Email: "ada@example.com"})
		res.User = created.GetUser()
		return fmt.Sprintf("id=%s name=%q", res.User.GetId(), res.User.GetName()), err
	})
	if err != nil {
		return nil, err
	}
	err = c.step(ctx, out, "order.CreateOrder", func(ctx context.Context) (string, error) {
		placed, callErr := c.Order.CreateOrder(ctx, &orderv1.CreateOrderRequest{
			IdempotencyKey: uuid.NewString(), UserId: res.User.GetId(), Item: "analytical engine", Quantity: 1,
		})
		res.Order = placed.GetOrder()
		return fmt.Sprintf("id=%s item=%q (order called user.GetUser)", res.Order.GetId(), res.Order.GetItem()), callErr
	})
	if err != nil {
		return nil, err
	}
	err = c.step(ctx, out, "user.GetUserProfile", func(ctx context.Context) (string, error) {
		profile, callErr := c.User.GetUserProfile(ctx, &userv1.GetUserProfileRequest{Id: res.User.GetId()})
		res.Profile = profile
		return fmt.Sprintf("%s has %d order(s) (user called order.ListOrders)",
			profile.GetUser().GetName(), len(profile.GetOrders())), callErr
	})
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// step runs one demo call under a root span of its own and prints its
// result with the trace ID to look it up by.
func (c *DemoClients) step(ctx context.Context, out io.Writer, name string, call func(context.Context) (string, error)) error {
	ctx, span := c.tracer.Start(ctx, "demo "+name)
	defer span.End()
	summary, err := call(ctx)
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
		return fmt.Errorf("%s: %w", name, err)
	}
	fmt.Fprintf(out, "%-20s -> %s\n", name, summary)
	if sc := span.SpanContext(); sc.IsValid() {
		fmt.Fprintf(out, "%-20s    trace_id=%s\n", "", sc.TraceID())
	}
	return nil
}
