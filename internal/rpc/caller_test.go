package rpc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/rampart-go/rampart/internal/rpc"
)

func TestServiceOfURI(t *testing.T) {
	const td = "spiffe://47830656-d9a7-ddfc-e97a-3731c98f90d7.consul"
	tests := []struct {
		uri  string
		want string // "" for not a service identity
	}{
		{td + "/ns/default/dc/dc1/svc/user", "user"},
		{td + "/ns/default/dc/dc1/svc/order-v2", "order-v2"},
		{td + "/ap/eu/ns/shop/dc/dc2/svc/order", "order"},
		{"spiffe://other.consul/ns/default/dc/dc1/svc/user", "user"}, // the trust domain is the handshake's to check
		{td + "/agent/client/dc/dc1/id/node-1", ""},
		{td + "/gateway/mesh/dc/dc1", ""},
		{td + "/ns/default/dc/dc1/svc/", ""},
		{td + "/ns/default/dc/dc1/svc/user/extra", ""},
		{td + "/ns//dc/dc1/svc/user", ""},
		{td + "/ns/default/svc/user", ""},
		{td + "/ap/eu/svc/user", ""},
		{td + "/ap/eu", ""},
		{td + "/dc/dc1/svc/user", ""},
		{td, ""},
		{"https://example.com/ns/default/dc/dc1/svc/user", ""},
		{"spiffe:///ns/default/dc/dc1/svc/user", ""},
		{td + "/ns/default/dc/dc1/svc/user?x=1", ""},
		{"spiffe://u@example.consul/ns/default/dc/dc1/svc/user", ""},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.uri)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := rpc.ServiceOfURI(u)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("ServiceOfURI(%s) = %q, %v; want %q", tt.uri, got, ok, tt.want)
		}
	}
	if _, ok := rpc.ServiceOfURI(nil); ok {
		t.Error("a nil URI names a service")
	}
}

// tlsPeer is the context of a call that came over TLS with the given peer
// certificates, as grpc-go hands it to a handler.
func tlsPeer(complete bool, certs ...*x509.Certificate) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{
		State: tls.ConnectionState{HandshakeComplete: complete, PeerCertificates: certs},
	}})
}

func certWith(uris ...string) *x509.Certificate {
	c := &x509.Certificate{}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			panic(err)
		}
		c.URIs = append(c.URIs, u)
	}
	return c
}

func TestCallerService(t *testing.T) {
	const user = "spiffe://td.consul/ns/default/dc/dc1/svc/user"
	tests := []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"no peer", context.Background(), ""},
		{"plaintext", peer.NewContext(context.Background(), &peer.Peer{}), ""},
		{"TLS without client certificate", tlsPeer(true), ""},
		{"service certificate", tlsPeer(true, certWith(user), certWith("spiffe://td.consul")), "user"},
		{"handshake not complete", tlsPeer(false, certWith(user)), ""},
		{"two URI SANs", tlsPeer(true, certWith(user, "spiffe://td.consul/ns/default/dc/dc1/svc/order")), ""},
		{"agent certificate", tlsPeer(true, certWith("spiffe://td.consul/agent/client/dc/dc1/id/n1")), ""},
		{"no URI SAN", tlsPeer(true, certWith()), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := rpc.CallerService(tt.ctx)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("CallerService = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

// The access log and the server span read the caller on every call.
func TestCallerServiceAllocatesNothing(t *testing.T) {
	ctx := tlsPeer(true, certWith("spiffe://td.consul/ap/eu/ns/default/dc/dc1/svc/user"))
	plain := peer.NewContext(context.Background(), &peer.Peer{})
	if allocs := testing.AllocsPerRun(100, func() { _, _ = rpc.CallerService(ctx); _, _ = rpc.CallerService(plain) }); allocs != 0 {
		t.Errorf("CallerService allocates %v times per call, want 0", allocs)
	}
}

// A denial is the caller's to fix and an authorization outage is the
// instance's: retry, the breaker and outlier ejection read this.
func TestAuthorizationOutcomes(t *testing.T) {
	ctx := context.Background()
	denied := rpc.Classify(ctx, rpc.Error(codes.PermissionDenied, rpc.ReasonPermissionDenied, "order may not call user", nil))
	if want := (rpc.Outcome{Code: codes.PermissionDenied, Origin: rpc.OriginServer}); denied != want {
		t.Errorf("denied: %+v, want %+v (final, not the peer's fault)", denied, want)
	}
	down := rpc.Classify(ctx, rpc.Error(codes.Unavailable, rpc.ReasonAuthorizationUnavailable, "consul agent unreachable", nil))
	if want := (rpc.Outcome{Code: codes.Unavailable, Origin: rpc.OriginServer, Transient: true, PeerFault: true}); down != want {
		t.Errorf("authorization unavailable: %+v, want %+v (another instance may answer)", down, want)
	}
}
