package order_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	orderbiz "github.com/rampart-go/rampart/internal/biz/order"
	orderdata "github.com/rampart-go/rampart/internal/data/order"
	ordersvc "github.com/rampart-go/rampart/internal/service/order"
)

// buyers knows one user; for any other it answers as order's client of the
// user service does (orderdata's own test pins that text).
type buyers string

func (b buyers) Check(_ context.Context, id string) error {
	if id != string(b) {
		return fmt.Errorf("user service: %w", orderbiz.ErrBuyerNotFound)
	}
	return nil
}

// The order service's domain errors reach callers with these codes,
// reasons, fields and messages. An unknown buyer in particular answers
// exactly as it did when order reused user's error: NotFound,
// BUYER_NOT_FOUND, field user_id, and the user service's words.
func TestHandlersAnswerWithTheOrderReasons(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := ordersvc.NewService(orderbiz.NewUsecase(orderdata.NewStore(), buyers("u1")), log.NewStdLogger(io.Discard))
	create := func(key, userID string, quantity int32) func() error {
		return func() error {
			_, err := s.CreateOrder(ctx, &orderv1.CreateOrderRequest{IdempotencyKey: key, UserId: userID, Item: "pen", Quantity: quantity})
			return err
		}
	}
	if err := create("k1", "u1", 1)(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
		field  string
		msg    string
	}{
		{
			"unknown buyer", create("k2", "ghost", 1), codes.NotFound, orderv1.ErrorReason_BUYER_NOT_FOUND.String(), "user_id",
			"create order: check buyer ghost: user service: user not found",
		},
		{
			"key reused", create("k1", "u1", 2), codes.AlreadyExists, orderv1.ErrorReason_IDEMPOTENCY_KEY_REUSED.String(), "idempotency_key",
			`create order with key "k1": idempotency key was used for a different order`,
		},
		{
			"bad quantity", create("k3", "u1", 0), codes.InvalidArgument, orderv1.ErrorReason_INVALID_ARGUMENT.String(), "quantity",
			"create order: quantity must be positive",
		},
		{"unknown order", func() error {
			_, err := s.GetOrder(ctx, &orderv1.GetOrderRequest{Id: "o9"})
			return err
		}, codes.NotFound, orderv1.ErrorReason_ORDER_NOT_FOUND.String(), "", "get order o9: order not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			got := kerrors.FromError(err)
			if status.Code(err) != tt.code || got.Reason != tt.reason || got.Metadata["field"] != tt.field || status.Convert(err).Message() != tt.msg {
				t.Fatalf("got %v (reason %q, metadata %v), want %v %s field %q %q", err, got.Reason, got.Metadata, tt.code, tt.reason, tt.field, tt.msg)
			}
		})
	}
}

// ListOrders pages with tokens bound to the user_id: a token that was
// altered, or that is replayed for another user, is InvalidArgument on
// page_token, and the last page has no token.
func TestListOrdersPageTokens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const buyer, other = "7b0c7ac4-5c7e-4b0a-9a8e-2f4a1c3f2a10", "0e3c1b8e-7a6f-4b7e-8d2c-5f1a9b3c4d20"
	s := ordersvc.NewService(orderbiz.NewUsecase(orderdata.NewStore(), buyers(buyer)), log.NewStdLogger(io.Discard))
	var want []string
	for i := range 3 {
		o, err := s.CreateOrder(ctx, &orderv1.CreateOrderRequest{IdempotencyKey: fmt.Sprint("k", i), UserId: buyer, Item: "pen", Quantity: 1})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, o.GetOrder().GetId())
	}
	first, err := s.ListOrders(ctx, &orderv1.ListOrdersRequest{UserId: buyer, PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	token := first.GetNextPageToken()
	if len(first.GetOrders()) != 2 || token == "" {
		t.Fatalf("first page = %d orders, token %q; want 2 and a token", len(first.GetOrders()), token)
	}
	last, err := s.ListOrders(ctx, &orderv1.ListOrdersRequest{UserId: buyer, PageSize: 2, PageToken: token})
	if err != nil {
		t.Fatal(err)
	}
	if len(last.GetOrders()) != 1 || last.GetOrders()[0].GetId() != want[2] || last.GetNextPageToken() != "" {
		t.Fatalf("last page = %v, token %q; want [%s] and no token", last.GetOrders(), last.GetNextPageToken(), want[2])
	}
	if all, err := s.ListOrders(ctx, &orderv1.ListOrdersRequest{UserId: buyer}); err != nil || len(all.GetOrders()) != 3 || all.GetNextPageToken() != "" {
		t.Fatalf("no page size (an old caller) = %v, %v; want all 3 orders of the default page", all, err)
	}

	altered := []byte(token)
	altered[len(altered)/2] ^= 1
	for _, tc := range []struct{ name, userID, token string }{
		{"altered", buyer, string(altered)},
		{"truncated", buyer, token[:len(token)-2]},
		{"not base64", buyer, "!!"},
		{"issued for another user", other, token},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.ListOrders(ctx, &orderv1.ListOrdersRequest{UserId: tc.userID, PageToken: tc.token})
			got := kerrors.FromError(err)
			if status.Code(err) != codes.InvalidArgument || got.Reason != orderv1.ErrorReason_INVALID_ARGUMENT.String() || got.Metadata["field"] != "page_token" {
				t.Fatalf("got %v (reason %q, metadata %v), want InvalidArgument on page_token", err, got.Reason, got.Metadata)
			}
		})
	}
}
