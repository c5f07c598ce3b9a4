package server

import (
	"net"
	"testing"
)

// server.grpc.advertise, when set, is what peers are told to dial,
// whatever the port is bound to; unset, the bound address is.
func TestAdvertiseGRPC(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4(10, 231, 7, 2), Port: 9001}
	for _, tc := range []struct {
		configured, want string
	}{
		{"", "10.231.7.2:9001"},
		{"10.231.7.1:19001", "10.231.7.1:19001"},
		{"user.example:443", "user.example:443"},
	} {
		if got := advertiseGRPC(tc.configured, bound); got != tc.want {
			t.Errorf("advertiseGRPC(%q, %s) = %s, want %s", tc.configured, bound, got, tc.want)
		}
	}
}
