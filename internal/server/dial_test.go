package server

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

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

// gate is a waiter that is ready once opened.
type gate chan struct{}

func (g gate) Wait(ctx context.Context) error {
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A connection is opened only once the instance has its certificate: a
// dial made before waits for it within its own deadline, and one whose
// deadline ends first fails without reaching the peer.
func TestDialWhenReady(t *testing.T) {
	lis, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lis.Close() }()
	accepted := make(chan struct{}, 2)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			_ = c.Close()
		}
	}()
	g := make(gate)
	dial := dialWhenReady(g)

	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := dial(short, lis.Addr().String()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial before the certificate, deadline ending first: %v, want DeadlineExceeded", err)
	}
	select {
	case <-accepted:
		t.Fatal("the peer was reached before the certificate came")
	default:
	}

	done := make(chan error, 1)
	go func() {
		c, err := dial(t.Context(), lis.Addr().String())
		if err == nil {
			_ = c.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("dial returned %v before the certificate came", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(g)
	if err := <-done; err != nil {
		t.Fatalf("dial once the certificate came: %v", err)
	}
	<-accepted
}
