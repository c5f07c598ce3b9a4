package bench_test

import (
	"context"
	"testing"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/middleware/validation"
)

// BenchmarkValidation is the validation middleware's share of a call: the
// proto's rules checked by protovalidate for the demo's most frequent
// requests, and for a refused one (which builds the InvalidArgument error).
// BenchmarkUnary's (c) includes it; this isolates it.
func BenchmarkValidation(b *testing.B) {
	const id = "0b0c6a4e-3f1e-4c55-9d2a-5d5b1f9a7c10"
	for _, bc := range []struct {
		name string
		req  any
	}{
		{"GetUser", &userv1.GetUserRequest{Id: id}},
		{"CreateOrder", &orderv1.CreateOrderRequest{IdempotencyKey: "k-1", UserId: id, Item: "pen", Quantity: 2}},
		{"CreateOrder_refused", &orderv1.CreateOrderRequest{IdempotencyKey: "k-1", UserId: "42", Item: "pen", Quantity: 2}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			mw, err := validation.Server(discard)
			if err != nil {
				b.Fatal(err)
			}
			h := mw(func(context.Context, any) (any, error) { return nil, nil })
			ctx := context.Background()
			if _, err := h(ctx, bc.req); (err != nil) != (bc.name == "CreateOrder_refused") {
				b.Fatalf("validation answered %v", err)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = h(ctx, bc.req)
			}
		})
	}
}
