package e2e

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/google/uuid"
	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/cmd/devstack/demo"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// TestDemoFlow runs the demo across both services through Consul discovery
// on two instances of each, checks what Consul shows about them, and checks
// that errors keep their code and reason across the network.
func TestDemoFlow(t *testing.T) {
	ctx := devstacktest.Context(t, 60*time.Second)
	s := startStack(t, ctx, 2, 2)
	consul := stackConsul(t, s)

	t.Run("Registrations", func(t *testing.T) {
		for _, name := range []string{"user", "order"} {
			checkRegistrations(t, ctx, consul, name, s.Instances(name), s.MTLS())
		}
	})

	clients := dialDemo(t, ctx, s)

	t.Run("Demo", func(t *testing.T) {
		var out bytes.Buffer
		res, err := demo.Run(ctx, clients, &out)
		t.Logf("demo output:\n%s", out.String())
		if err != nil {
			t.Fatalf("demo: %v", err)
		}
		u, o := res.User, res.Order
		want := &userv1.User{Id: u.GetId(), Name: "Ada Lovelace", Email: "ada@example.com"}
		if !proto.Equal(u, want) {
			t.Errorf("user = %v, want %v", u, want)
		}
		checkUUID(t, "user ID", u.GetId())
		checkUUID(t, "order ID", o.GetId())
		wantOrder := &orderv1.Order{Id: o.GetId(), UserId: u.GetId(), Item: "analytical engine", Quantity: 1}
		if !proto.Equal(o, wantOrder) {
			t.Errorf("order = %v, want %v", o, wantOrder)
		}
		wantProfile := &userv1.GetUserProfileReply{
			User:   want,
			Orders: []*userv1.ProfileOrder{{Id: o.GetId(), Item: o.GetItem(), Quantity: o.GetQuantity()}},
		}
		if !proto.Equal(res.Profile, wantProfile) {
			t.Errorf("profile = %v, want %v", res.Profile, wantProfile)
		}
	})

	t.Run("UnknownBuyer", func(t *testing.T) {
		_, err := clients.Order.CreateOrder(ctx, &orderv1.CreateOrderRequest{
			IdempotencyKey: uuid.NewString(), UserId: uuid.NewString(), Item: "difference engine", Quantity: 1,
		})
		checkError(t, err, codes.NotFound, orderv1.ErrorReason_BUYER_NOT_FOUND.String())
	})

	t.Run("InvalidArgument", func(t *testing.T) { checkInvalidArgument(t, ctx, clients) })

	t.Run("Idempotency", func(t *testing.T) {
		created, err := clients.User.CreateUser(ctx, &userv1.CreateUserRequest{Name: "Charles Babbage", Email: "charles@example.com"})
		if err != nil {
			t.Fatalf("create user: %v", err)
		}
		userID := created.GetUser().GetId()
		req := &orderv1.CreateOrderRequest{IdempotencyKey: uuid.NewString(), UserId: userID, Item: "difference engine", Quantity: 2}
		first, err := clients.Order.CreateOrder(ctx, req)
		if err != nil {
			t.Fatalf("first create: %v", err)
		}
		again, err := clients.Order.CreateOrder(ctx, req)
		if err != nil {
			t.Fatalf("repeated create: %v", err)
		}
		if !proto.Equal(again.GetOrder(), first.GetOrder()) {
			t.Errorf("repeated create = %v, want the first order %v", again.GetOrder(), first.GetOrder())
		}
		list, err := clients.Order.ListOrders(ctx, &orderv1.ListOrdersRequest{UserId: userID})
		if err != nil {
			t.Fatalf("list orders: %v", err)
		}
		if len(list.GetOrders()) != 1 || list.GetOrders()[0].GetId() != first.GetOrder().GetId() {
			t.Errorf("orders of %s = %v, want only %s", userID, list.GetOrders(), first.GetOrder().GetId())
		}

		changed := proto.CloneOf(req)
		changed.Quantity = 3
		_, err = clients.Order.CreateOrder(ctx, changed)
		checkError(t, err, codes.AlreadyExists, orderv1.ErrorReason_IDEMPOTENCY_KEY_REUSED.String())
		if !kerrors.IsConflict(err) {
			t.Errorf("Kratos code = %d, want 409 (Conflict)", kerrors.Code(err))
		}
	})
}

// checkInvalidArgument sends requests that break a field's rule through
// clients and checks that each answers InvalidArgument naming the field.
func checkInvalidArgument(t *testing.T, ctx context.Context, clients *demo.Clients) {
	t.Helper()
	validOrder := func() *orderv1.CreateOrderRequest {
		return &orderv1.CreateOrderRequest{
			IdempotencyKey: uuid.NewString(), UserId: uuid.NewString(), Item: "difference engine", Quantity: 1,
		}
	}
	tests := []struct {
		name  string
		call  func(context.Context) error
		field string
	}{
		{"EmptyName", func(ctx context.Context) error {
			_, err := clients.User.CreateUser(ctx, &userv1.CreateUserRequest{Name: "", Email: "ada@example.com"})
			return err
		}, "name"},
		{"ZeroQuantity", func(ctx context.Context) error {
			req := validOrder()
			req.Quantity = 0
			_, err := clients.Order.CreateOrder(ctx, req)
			return err
		}, "quantity"},
		{"MissingIdempotencyKey", func(ctx context.Context) error {
			req := validOrder()
			req.IdempotencyKey = ""
			_, err := clients.Order.CreateOrder(ctx, req)
			return err
		}, "idempotency_key"},
		{"MalformedUserID", func(ctx context.Context) error {
			_, err := clients.User.GetUser(ctx, &userv1.GetUserRequest{Id: "not-a-uuid"})
			return err
		}, "id"},
		{"MalformedBuyerID", func(ctx context.Context) error {
			req := validOrder()
			req.UserId = "not-a-uuid"
			_, err := clients.Order.CreateOrder(ctx, req)
			return err
		}, "user_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(ctx)
			if got := status.Code(err); got != codes.InvalidArgument {
				t.Fatalf("code = %v (%v), want InvalidArgument", got, err)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.field) {
				t.Errorf("message %q does not name the field %q", msg, tt.field)
			}
		})
	}
}

// checkRegistrations asserts that Consul lists exactly the given instances
// of name as passing, each with one health check beside the node's
// serfHealth and a version tag: a gRPC check in plaintext, an HTTP check of
// /readyz in mtls (the agent has no client certificate for the gRPC port),
// where the instance also advertises a grpcs:// endpoint.
func checkRegistrations(t *testing.T, ctx context.Context, consul *api.Client, name string, procs []*devstack.ServiceProc, mtls bool) {
	t.Helper()
	checkType, scheme := "grpc", "grpc://"
	if mtls {
		checkType, scheme = "http", "grpcs://"
	}
	entries, err := passing(ctx, consul, name)
	if err != nil {
		t.Fatalf("consul health of %s: %v", name, err)
	}
	if len(entries) != len(procs) {
		t.Fatalf("consul lists %d passing %s instances, want %d", len(entries), name, len(procs))
	}
	var wantPorts, gotPorts []int
	for _, p := range procs {
		wantPorts = append(wantPorts, portOf(t, p.GRPCAddr))
	}
	for _, e := range entries {
		svc := e.Service
		gotPorts = append(gotPorts, svc.Port)
		if !slices.ContainsFunc(svc.Tags, func(tag string) bool { return strings.HasPrefix(tag, "version=") }) {
			t.Errorf("%s: tags %v have no version=", svc.ID, svc.Tags)
		}
		if ep := svc.Meta["endpoint-0"]; !strings.HasPrefix(ep, scheme) {
			t.Errorf("%s advertises %q, want a %s endpoint", svc.ID, ep, scheme)
		}
		var checks int
		for _, c := range e.Checks {
			switch {
			case c.ServiceID == "" && c.CheckID == "serfHealth":
				// the node's own check
			case c.ServiceID == svc.ID && c.Type == checkType:
				checks++
				if c.Status != api.HealthPassing {
					t.Errorf("%s: check %s is %s, want passing", svc.ID, c.CheckID, c.Status)
				}
			default:
				t.Errorf("%s: unexpected check %s (type %q, service %q)", svc.ID, c.CheckID, c.Type, c.ServiceID)
			}
		}
		if checks != 1 {
			t.Errorf("%s: %d %s checks, want 1", svc.ID, checks, checkType)
		}
	}
	slices.Sort(wantPorts)
	slices.Sort(gotPorts)
	if !slices.Equal(gotPorts, wantPorts) {
		t.Errorf("consul lists %s on ports %v, the instances serve on %v", name, gotPorts, wantPorts)
	}
}

// checkError asserts the gRPC code and the Kratos reason of err.
func checkError(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Errorf("code = %v (%v), want %v", got, err, code)
	}
	if got := kerrors.Reason(err); got != reason {
		t.Errorf("reason = %q (%v), want %q", got, err, reason)
	}
}

// checkUUID asserts that id is a UUID in canonical form.
func checkUUID(t *testing.T, what, id string) {
	t.Helper()
	if u, err := uuid.Parse(id); err != nil || u.String() != id {
		t.Errorf("%s %q is not a canonical UUID", what, id)
	}
}
