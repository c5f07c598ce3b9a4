package retry_test

import (
	"testing"

	"github.com/rampart-go/rampart/internal/middleware/retry"
)

// The answers come from the idempotency_level options in api/user/v1 and
// api/order/v1, as registered by their generated packages.
func TestIsSafeToRetryReadsDescriptors(t *testing.T) {
	tests := []struct {
		method string
		safe   bool
	}{
		{"/user.v1.UserService/GetUser", true},        // NO_SIDE_EFFECTS
		{"/user.v1.UserService/GetUserProfile", true}, // NO_SIDE_EFFECTS
		{"/user.v1.UserService/CreateUser", false},    // not declared
		{"/order.v1.OrderService/CreateOrder", true},  // IDEMPOTENT
		{"/order.v1.OrderService/GetOrder", true},     // NO_SIDE_EFFECTS
		{"/order.v1.OrderService/ListOrders", true},   // NO_SIDE_EFFECTS
		{"/user.v1.UserService/DeleteUser", false},    // no such method
		{"/user.v2.UserService/GetUser", false},       // no such service
		{"/grpc.health.v1.Health/Check", false},       // not linked here, or not declared
		{"/user.v1/UserService", false},               // names a service, not a method
		{"user.v1.UserService/GetUser", false},        // no leading slash
		{"/user.v1.UserService.GetUser", false},       // no method separator
		{"/user.v1.UserService/GetUser/extra", false}, // too many parts
		{"/user.v1.UserService/", false},              // empty method
		{"", false},                                   // empty
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			for range 2 { // the second answer comes from the cache
				if got := retry.IsSafeToRetry(tt.method); got != tt.safe {
					t.Fatalf("IsSafeToRetry = %t, want %t", got, tt.safe)
				}
			}
		})
	}
}

func TestIsSafeToRetryCachedWithoutAllocation(t *testing.T) {
	retry.IsSafeToRetry(getUser)
	if n := testing.AllocsPerRun(100, func() { retry.IsSafeToRetry(getUser) }); n != 0 {
		t.Fatalf("%.0f allocs per cached lookup, want 0", n)
	}
}
