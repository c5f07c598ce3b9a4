// Package v1 is the order service API: the generated messages and client,
// and the Validate methods the server runs before any handler.
package v1

import "github.com/rampart-go/rampart/internal/validate"

// MaxQuantity bounds one order line; larger numbers are typos, not orders.
const MaxQuantity = 10000

// Validate rejects a CreateOrderRequest before the order service asks the
// user service anything.
func (r *CreateOrderRequest) Validate() error {
	return validate.First(
		validate.Text("idempotency_key", r.GetIdempotencyKey(), 128),
		validate.ID("user_id", r.GetUserId()),
		validate.Text("item", r.GetItem(), 200),
		quantity(r.GetQuantity()),
	)
}

// Validate rejects a GetOrderRequest whose id is not a UUID.
func (r *GetOrderRequest) Validate() error { return validate.ID("id", r.GetId()) }

// Validate rejects a ListOrdersRequest whose user_id is not a UUID or whose
// page_size is negative. A page_token is checked by the handler, which alone
// can tell whether it was issued for this user_id.
func (r *ListOrdersRequest) Validate() error {
	return validate.First(
		validate.ID("user_id", r.GetUserId()),
		validate.PageSize("page_size", r.GetPageSize()),
	)
}

func quantity(q int32) error {
	if q <= 0 || q > MaxQuantity {
		return validate.Field("quantity", "must be between 1 and %d, got %d", MaxQuantity, q)
	}
	return nil
}
