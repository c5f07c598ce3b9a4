package validation_test

import (
	"context"
	"strings"
	"testing"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/middleware/validation"
)

const validID = "0b0c6a4e-3f1e-4c55-9d2a-5d5b1f9a7c10"

func TestRejectsBadRequestsNamingTheField(t *testing.T) {
	tests := []struct {
		name  string
		req   any
		field string
	}{
		{"empty name", &userv1.CreateUserRequest{Email: "a@b.c"}, "name"},
		{"blank name", &userv1.CreateUserRequest{Name: "  ", Email: "a@b.c"}, "name"},
		{"email without domain", &userv1.CreateUserRequest{Name: "Ada", Email: "ada@"}, "email"},
		{"malformed user id", &userv1.GetUserRequest{Id: "not-a-uuid"}, "id"},
		{"upper-case uuid is not canonical", &userv1.GetUserProfileRequest{Id: strings.ToUpper(validID)}, "id"},
		{"missing idempotency key", &orderv1.CreateOrderRequest{UserId: validID, Item: "pen", Quantity: 1}, "idempotency_key"},
		{"zero quantity", &orderv1.CreateOrderRequest{IdempotencyKey: "k", UserId: validID, Item: "pen"}, "quantity"},
		{"negative quantity", &orderv1.CreateOrderRequest{IdempotencyKey: "k", UserId: validID, Item: "pen", Quantity: -1}, "quantity"},
		{"huge quantity", &orderv1.CreateOrderRequest{IdempotencyKey: "k", UserId: validID, Item: "pen", Quantity: orderv1.MaxQuantity + 1}, "quantity"},
		{"malformed buyer", &orderv1.CreateOrderRequest{IdempotencyKey: "k", UserId: "42", Item: "pen", Quantity: 1}, "user_id"},
		{"empty item", &orderv1.CreateOrderRequest{IdempotencyKey: "k", UserId: validID, Quantity: 1}, "item"},
		{"malformed order id", &orderv1.GetOrderRequest{Id: ""}, "id"},
		{"malformed list user", &orderv1.ListOrdersRequest{UserId: "x"}, "user_id"},
		{"negative page size", &orderv1.ListOrdersRequest{UserId: validID, PageSize: -1}, "page_size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			h := validation.Server()(func(context.Context, any) (any, error) { called = true; return "ok", nil })
			_, err := h(context.Background(), tt.req)
			if called {
				t.Fatal("handler ran for an invalid request")
			}
			if got := status.Code(err); got != codes.InvalidArgument {
				t.Fatalf("code = %v, want InvalidArgument (err %v)", got, err)
			}
			ke := kerrors.FromError(err)
			if ke.Metadata["field"] != tt.field || !strings.HasPrefix(ke.Message, tt.field+":") {
				t.Fatalf("field = %q, message = %q; want field %q named", ke.Metadata["field"], ke.Message, tt.field)
			}
		})
	}
}

func TestPassesValidRequests(t *testing.T) {
	for _, req := range []any{
		&userv1.CreateUserRequest{Name: "Ada", Email: "ada@example.com"},
		&userv1.GetUserRequest{Id: validID},
		&orderv1.CreateOrderRequest{IdempotencyKey: "k", UserId: validID, Item: "pen", Quantity: 1},
		&orderv1.ListOrdersRequest{UserId: validID},
		// Above the maximum is lowered to it, not refused (AIP-158).
		&orderv1.ListOrdersRequest{UserId: validID, PageSize: 5000, PageToken: "checked by the handler"},
		"a request type without Validate",
	} {
		h := validation.Server()(func(context.Context, any) (any, error) { return "ok", nil })
		if reply, err := h(context.Background(), req); err != nil || reply != "ok" {
			t.Fatalf("%T: reply=%v err=%v", req, reply, err)
		}
	}
}
