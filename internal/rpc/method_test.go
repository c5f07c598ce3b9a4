package rpc_test

import (
	"testing"

	"github.com/go-kratos/kratos/v2/transport"

	"github.com/rampart-go/rampart/internal/rpc"
)

func TestSplitMethod(t *testing.T) {
	tests := []struct {
		in                    string
		wantService, wantMeth string
		wantOK                bool
	}{
		{"/user.v1.UserService/GetUser", "user.v1.UserService", "GetUser", true},
		{"/Health/Check", "Health", "Check", true},
		{"user.v1.UserService/GetUser", "", "", false}, // no leading slash
		{"/user.v1.UserService", "", "", false},        // no method
		{"/user.v1.UserService/", "", "", false},
		{"//GetUser", "", "", false}, // no service
		{"/a/b/c", "", "", false},
		{"/", "", "", false},
		{"", "", "", false},
		{"*", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			service, method, ok := rpc.SplitMethod(tt.in)
			if service != tt.wantService || method != tt.wantMeth || ok != tt.wantOK {
				t.Fatalf("SplitMethod(%q) = %q, %q, %v; want %q, %q, %v",
					tt.in, service, method, ok, tt.wantService, tt.wantMeth, tt.wantOK)
			}
		})
	}
}

func TestOperation(t *testing.T) {
	const incoming, outgoing = "/order.v1.OrderService/CreateOrder", "/user.v1.UserService/GetUser"
	handler := serverCtx(t, incoming)
	tests := []struct {
		name string
		ctx  func(*testing.T) string
		want string
	}{
		{"server, no transport", func(t *testing.T) string { return rpc.ServerOperation(testCtx(t)) }, rpc.UnknownOperation},
		{"client, no transport", func(t *testing.T) string { return rpc.ClientOperation(testCtx(t)) }, rpc.UnknownOperation},
		{"server middleware", func(*testing.T) string { return rpc.ServerOperation(handler) }, incoming},
		{"client middleware of a bare client", func(t *testing.T) string {
			return rpc.ClientOperation(transport.NewClientContext(testCtx(t), fakeTransport{op: outgoing}))
		}, outgoing},
		{"client middleware of a call the handler makes", func(*testing.T) string {
			return rpc.ClientOperation(transport.NewClientContext(handler, fakeTransport{op: outgoing}))
		}, outgoing},
		{"client side of a handler's context without an outgoing call", func(*testing.T) string {
			return rpc.ClientOperation(handler)
		}, rpc.UnknownOperation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ctx(t); got != tt.want {
				t.Fatalf("Operation = %q, want %q", got, tt.want)
			}
		})
	}
}
