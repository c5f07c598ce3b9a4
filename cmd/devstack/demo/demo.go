// Package demo is the flow `make run` and `make nomad-up` show once the
// stack is up: a user, an order for that user, then the user's profile,
// each call crossing both services through Consul discovery. It lives with
// cmd/devstack rather than in the launcher because it is a client of the
// services (it links the client chain and data's dialing), which the
// launcher must not be; the e2e and Nomad suites import it to run the same
// flow the developer sees.
//
// The flow is about the user/order pair by nature, so this is the one place
// that names them; the launcher finds services by convention.
package demo

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
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/mtls"
	"github.com/rampart-go/rampart/internal/server"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// The services the flow crosses, as in Consul and under cmd/.
const (
	UserService  = "user"
	OrderService = "order"
)

// Services lists users instances of user and orders of order, user first
// since order calls it, leaving out a service asked for zero times.
func Services(users, orders int) []devstack.ServiceCount {
	var out []devstack.ServiceCount
	if users > 0 {
		out = append(out, devstack.ServiceCount{Name: UserService, Instances: users})
	}
	if orders > 0 {
		out = append(out, devstack.ServiceCount{Name: OrderService, Instances: orders})
	}
	return out
}

// Result is what one run of the flow produced.
type Result struct {
	User    *userv1.User
	Order   *orderv1.Order
	Profile *userv1.GetUserProfileReply
}

// Clients reach both services the way a real client would: through
// Consul discovery, never by a fixed address.
type Clients struct {
	User   userv1.UserServiceClient
	Order  orderv1.OrderServiceClient
	closes []func()
	reg    *consul.Registry
	tracer trace.Tracer
}

// DialOption changes how Dial connects.
type DialOption func(*dialOptions)

type dialOptions struct{ src mtls.Source }

// WithCertificates dials over mutual TLS, presenting src's certificate
// (in a stack started with devstack's MTLS, one of
// devstack.ClientIdentity, which intentions allow to call every service).
// Without it Dial connects in plaintext.
func WithCertificates(src mtls.Source) DialOption {
	return func(o *dialOptions) { o.src = src }
}

// Dial dials discovery:///user and discovery:///order through client,
// with the same client chain the services use on each other. With tel, each
// step of Run is a trace whose ID it prints; nil leaves calls untraced.
func Dial(_ context.Context, client *api.Client, tel *telemetry.Telemetry, opts ...DialOption) (*Clients, error) {
	var o dialOptions
	for _, opt := range opts {
		opt(&o)
	}
	configs := middleware.ClientConfigs{}
	for _, name := range []string{UserService, OrderService} {
		cl := middleware.DefaultClientConfig()
		cl.Target = "discovery:///" + name
		configs[name] = cl
	}
	server.Setup()
	reg := consul.New(client)
	dialer := server.NewDialer(reg, middleware.NewClients(configs, log.NewStdLogger(io.Discard), tel), o.src)
	userConn, closeUser, err := dialer.Dial(UserService)
	if err != nil {
		_ = reg.Close()
		return nil, err // the dialer names the service
	}
	orderConn, closeOrder, err := dialer.Dial(OrderService)
	if err != nil {
		closeUser()
		_ = reg.Close()
		return nil, err
	}
	tracer := noop.NewTracerProvider().Tracer("")
	if tel != nil {
		tracer = tel.TracerProvider().Tracer("github.com/rampart-go/rampart/cmd/devstack/demo")
	}
	return &Clients{
		tracer: tracer,
		User:   userv1.NewUserServiceClient(userConn),
		Order:  orderv1.NewOrderServiceClient(orderConn),
		closes: []func(){closeUser, closeOrder},
		reg:    reg,
	}, nil
}

// Close closes both connections and the registry that fed them.
func (c *Clients) Close() {
	for _, closeConn := range c.closes {
		closeConn()
	}
	_ = c.reg.Close()
}

// Run runs the flow that crosses both services and writes each step to
// out with its trace ID: create a user, create an order (order asks user
// whether the buyer exists), then fetch the profile (user asks order for
// the orders).
func Run(ctx context.Context, c *Clients, out io.Writer) (*Result, error) {
	var res Result
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

// step runs one call under a root span of its own and prints its result
// with the trace ID to look it up by.
func (c *Clients) step(ctx context.Context, out io.Writer, name string, call func(context.Context) (string, error)) error {
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

// GatewayMeta is the Consul service metadata key under which an instance
// registers its public HTTP/JSON address.
const GatewayMeta = "gateway"

// Gateway is the HTTP/JSON address (host:port) of a passing instance of
// name, read from its Consul registration as any client outside the
// cluster would find it.
func Gateway(ctx context.Context, client *api.Client, name string) (string, error) {
	entries, _, err := client.Health().Service(name, "", true, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("gateway of %s: %w", name, err)
	}
	for _, e := range entries {
		if addr := e.Service.Meta[GatewayMeta]; addr != "" {
			return addr, nil
		}
	}
	return "", fmt.Errorf("gateway of %s: no passing instance registers metadata %q", name, GatewayMeta)
}

// CurlLines are shell commands that call the flow's two services over
// HTTP/JSON at their gateways: create a user at userGW, place an order for
// res's user at orderGW, with its idempotency key in the Idempotency-Key
// header (run it twice: the same order comes back), and read the user's
// profile at userGW.
func CurlLines(userGW, orderGW string, res *Result) []string {
	const post = "curl -s -X POST -H 'Content-Type: application/json' "
	return []string{
		post + "http://" + userGW + "/v1/users -d '{\"name\":\"Grace Hopper\",\"email\":\"grace@example.com\"}'",
		post + "-H 'Idempotency-Key: " + uuid.NewString() + "' http://" + orderGW + "/v1/orders" +
			" -d '{\"userId\":\"" + res.User.GetId() + "\",\"item\":\"difference engine\",\"quantity\":2}'",
		"curl -s http://" + userGW + "/v1/users/" + res.User.GetId() + "/profile",
	}
}

// ProbeCall is a read-only call of the service svc that a shell can make
// to see whether its identity may call it: a lookup of an ID that exists
// nowhere, which answers NotFound once the call is allowed and
// PermissionDenied before. ok is false for a service the flow does not
// know.
func ProbeCall(svc string) (method, body string, ok bool) {
	const nobody = `{"id":"00000000-0000-4000-8000-000000000000"}`
	switch svc {
	case UserService:
		return "user.v1.UserService/GetUser", nobody, true
	case OrderService:
		return "order.v1.OrderService/GetOrder", nobody, true
	}
	return "", "", false
}
