package server

import "testing"

// The service a client wants named in the server's certificate is the
// discovery target's, or the client's own name for a fixed address.
func TestTargetService(t *testing.T) {
	for _, tt := range []struct{ target, client, want string }{
		{"discovery:///user", "users", "user"},
		{"discovery:///order/", "order", "order"},
		{"127.0.0.1:9000", "user", "user"},
		{"passthrough:///127.0.0.1:9000", "user", "user"},
		{"discovery:///", "user", "user"},
	} {
		if got := targetService(tt.target, tt.client); got != tt.want {
			t.Errorf("targetService(%q, %q) = %q, want %q", tt.target, tt.client, got, tt.want)
		}
	}
}

// A nil Identity is plaintext mode: no TLS anywhere, no authorization step,
// nothing to wait for.
func TestPlaintextIdentity(t *testing.T) {
	var id *Identity
	if id.Source() != nil || NewTLSSource(id) != nil || id.serverTLS() != nil || id.selfTLS() != nil {
		t.Error("a nil Identity hands out TLS")
	}
	if az := NewAuthorization(id); az.Authorizer != nil {
		t.Error("a nil Identity authorizes")
	}
	if err := id.wait(t.Context(), nil); err != nil {
		t.Errorf("wait = %v", err)
	}
}
