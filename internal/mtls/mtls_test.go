package mtls_test

import (
	"context"
	"crypto/tls"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/leakcheck"
	"github.com/rampart-go/rampart/internal/mtls"
	"github.com/rampart-go/rampart/internal/mtls/mtlstest"
	"github.com/rampart-go/rampart/internal/rpc"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

const trustDomain = "11111111-2222-3333-4444-555555555555.consul"

// server is a loopback gRPC server with the health service behind cfg; it
// records the caller each call saw (rpc.CallerService).
type server struct {
	addr    string
	mu      sync.Mutex
	callers []string
}

func (s *server) lastCaller() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.callers) == 0 {
		return ""
	}
	return s.callers[len(s.callers)-1]
}

func serve(t *testing.T, cfg *tls.Config) *server {
	t.Helper()
	s := &server{}
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		caller, ok := rpc.CallerService(ctx)
		if !ok {
			caller = "<none>"
		}
		s.mu.Lock()
		s.callers = append(s.callers, caller)
		s.mu.Unlock()
		return h(ctx, req)
	}
	s.addr = mtlstest.Serve(t, cfg, grpc.UnaryInterceptor(record))
	return s
}

// call makes one health check over a new connection with cfg.
func call(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// refused asserts that a call failed in the handshake: Unavailable from
// the transport, never an answer of the server.
func refused(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: the call succeeded", what)
	}
	if st := status.Convert(err); st.Code() != codes.Unavailable {
		t.Fatalf("%s: %v, want Unavailable from a refused handshake", what, err)
	}
	t.Logf("%s: refused as expected: %v", what, err)
}

func TestRightPairConnectsAndTheServerSeesTheCaller(t *testing.T) {
	ca := mtlstest.NewCA(t, trustDomain)
	srv := serve(t, mtls.ServerConfig(ca.Source(t, "user")))
	if err := call(t, srv.addr, mtls.ClientConfig(ca.Source(t, "order"), "user")); err != nil {
		t.Fatalf("order calling user: %v", err)
	}
	if got := srv.lastCaller(); got != "order" {
		t.Errorf("the server saw caller %q, want order", got)
	}
}

func TestNoClientCertificateIsRefused(t *testing.T) {
	ca := mtlstest.NewCA(t, trustDomain)
	srv := serve(t, mtls.ServerConfig(ca.Source(t, "user")))
	// Verifies the server properly, presents nothing.
	cfg := mtls.ClientConfig(ca.Source(t, "order"), "user")
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
	refused(t, call(t, srv.addr, cfg), "no client certificate")
	if got := srv.lastCaller(); got != "" {
		t.Errorf("a call reached the handler, caller %q", got)
	}
}

func TestCertificateOfAnotherCAIsRefused(t *testing.T) {
	ca := mtlstest.NewCA(t, trustDomain)
	forged := mtlstest.NewCA(t, trustDomain) // same trust domain name, another key
	srv := serve(t, mtls.ServerConfig(ca.Source(t, "user")))

	// The client trusts the real CA, so it would accept the server; only
	// its own certificate comes from the other CA.
	src := ca.Source(t, "order")
	src.SetSVID(forged.SVID(t, "order"))
	refused(t, call(t, srv.addr, mtls.ClientConfig(src, "user")), "client certificate of another CA")

	// And the other way round: a server with a forged certificate.
	forgedSrv := ca.Source(t, "user")
	forgedSrv.SetSVID(forged.SVID(t, "user"))
	srv2 := serve(t, mtls.ServerConfig(forgedSrv))
	refused(t, call(t, srv2.addr, mtls.ClientConfig(ca.Source(t, "order"), "user")), "server certificate of another CA")
	if got := srv.lastCaller() + srv2.lastCaller(); got != "" {
		t.Errorf("a call reached a handler, caller %q", got)
	}
}

func TestServerOfAnotherServiceIsRefused(t *testing.T) {
	ca := mtlstest.NewCA(t, trustDomain)
	srv := serve(t, mtls.ServerConfig(ca.Source(t, "order")))
	refused(t, call(t, srv.addr, mtls.ClientConfig(ca.Source(t, "billing"), "user")), "client expecting user, server presenting order")
	if err := call(t, srv.addr, mtls.ClientConfig(ca.Source(t, "billing"), "order")); err != nil {
		t.Fatalf("the same server as order: %v", err)
	}
}

func TestAnotherTrustDomainIsRefused(t *testing.T) {
	ca := mtlstest.NewCA(t, trustDomain)
	other := mtlstest.NewCA(t, "99999999-2222-3333-4444-555555555555.consul")
	srv := serve(t, mtls.ServerConfig(ca.Source(t, "user")))
	// A client of the other domain that trusts our roots and accepts any
	// server: only the server can refuse it.
	src := other.Source(t, "order")
	src.SetBundle(ca.Bundle())
	cfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeAny())
	refused(t, call(t, srv.addr, cfg), "client of another trust domain")
	if got := srv.lastCaller(); got != "" {
		t.Errorf("a call reached the handler, caller %q", got)
	}
}

// Any identity of the trust domain may connect; an identity that names no
// service reaches the handler without a caller, for authorization to
// refuse.
func TestNonServiceIdentityConnectsWithoutACaller(t *testing.T) {
	ca := mtlstest.NewCA(t, trustDomain)
	srv := serve(t, mtls.ServerConfig(ca.Source(t, "user")))
	agent, err := spiffeid.FromSegments(ca.TrustDomain(), "agent", "client", "dc", "dc1", "id", "node-1")
	if err != nil {
		t.Fatal(err)
	}
	src := ca.Source(t, "unused")
	src.SetSVID(ca.SVIDFor(t, agent))
	if err := call(t, srv.addr, mtls.ClientConfig(src, "user")); err != nil {
		t.Fatalf("an agent identity: %v", err)
	}
	if got := srv.lastCaller(); got != "<none>" {
		t.Errorf("caller %q, want none", got)
	}
}

// A new SVID in the source is what the next handshake presents: no
// restart, and connections already open go on.
func TestRotationAppliesToTheNextHandshake(t *testing.T) {
	ca := mtlstest.NewCA(t, trustDomain)
	next := mtlstest.NewCA(t, trustDomain) // a CA rotation: new root, new leaves
	serverSrc, clientSrc := ca.Source(t, "user"), ca.Source(t, "order")
	srv := serve(t, mtls.ServerConfig(serverSrc))

	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(credentials.NewTLS(mtls.ClientConfig(clientSrc, "user"))))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(conn)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	// Both roots trusted during the rotation, then the leaves move.
	both := ca.Bundle()
	for _, root := range next.Bundle().X509Authorities() {
		both.AddX509Authority(root)
	}
	serverSrc.SetBundle(both)
	clientSrc.SetBundle(both)
	serverSrc.SetSVID(next.SVID(t, "user"))
	clientSrc.SetSVID(next.SVID(t, "order"))
	if err := call(t, srv.addr, mtls.ClientConfig(clientSrc, "user")); err != nil {
		t.Fatalf("new connection after the rotation: %v", err)
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("open connection after the rotation: %v", err)
	}

	// Once the old root is dropped, a peer still on an old leaf is out.
	serverSrc.SetBundle(next.Bundle())
	stale := ca.Source(t, "order")
	refused(t, call(t, srv.addr, mtls.ClientConfig(stale, "user")), "a leaf of the dropped root")
}

func TestServiceOf(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString(trustDomain)
	tests := []struct {
		id   spiffeid.ID
		want string
	}{
		{spiffeid.RequireFromSegments(td, "ns", "default", "dc", "dc1", "svc", "user"), "user"},
		{spiffeid.RequireFromSegments(td, "ap", "eu", "ns", "shop", "dc", "dc2", "svc", "order"), "order"},
		{spiffeid.RequireFromSegments(td, "agent", "client", "dc", "dc1", "id", "n1"), ""},
		{spiffeid.RequireFromSegments(td, "svc", "user"), ""},
		{td.ID(), ""},
		{spiffeid.ID{}, ""},
	}
	for _, tt := range tests {
		got, ok := mtls.ServiceOf(tt.id)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("ServiceOf(%s) = %q, %v; want %q", tt.id, got, ok, tt.want)
		}
	}
}

func TestOnlyTLS13(t *testing.T) {
	ca := mtlstest.NewCA(t, trustDomain)
	srv := serve(t, mtls.ServerConfig(ca.Source(t, "user")))
	cfg := mtls.ClientConfig(ca.Source(t, "order"), "user")
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	refused(t, call(t, srv.addr, cfg), "TLS 1.2 client")
}
