// Package mtlstest is a certificate authority for tests that issues
// certificates shaped like Consul's (a root with the trust domain's SPIFFE
// ID, leaves with spiffe://<td>/ns/default/dc/dc1/svc/<service>), a Source
// over them whose SVID a test can swap, as a rotation would, and a
// loopback gRPC server to handshake with.
package mtlstest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Datacenter is the datacenter in the SPIFFE IDs the CA issues.
const Datacenter = "dc1"

// CA signs leaves for one trust domain with its own key. Two CAs of the
// same trust domain name are two different authorities, as a forged CA
// would be.
type CA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA returns a CA for trustDomain ("<cluster-id>.consul" in Consul).
func NewCA(tb testing.TB, trustDomain string) *CA {
	tb.Helper()
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		tb.Fatal(err)
	}
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: "test CA " + trustDomain},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &CA{td: td, cert: cert, key: key}
}

// TrustDomain is the CA's trust domain.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Bundle is the trust bundle holding the CA's root.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
}

// ServiceID is the Consul SPIFFE ID of service in the CA's trust domain.
func (ca *CA) ServiceID(service string) spiffeid.ID {
	id, err := spiffeid.FromSegments(ca.td, "ns", "default", "dc", Datacenter, "svc", service)
	if err != nil {
		panic(fmt.Sprintf("mtlstest: service %q: %v", service, err))
	}
	return id
}

// SVID issues a leaf for service, valid for an hour, with the key usages
// Consul gives its leaves.
func (ca *CA) SVID(tb testing.TB, service string) *x509svid.SVID {
	tb.Helper()
	return ca.SVIDFor(tb, ca.ServiceID(service))
}

// SVIDFor issues a leaf for any SPIFFE ID of the CA's trust domain (an
// agent's, say), like SVID.
func (ca *CA) SVIDFor(tb testing.TB, id spiffeid.ID) *x509svid.SVID {
	tb.Helper()
	return ca.SVIDUntil(tb, id, time.Now().Add(time.Hour))
}

// SVIDUntil issues a leaf for id, like SVIDFor, that expires at notAfter
// (the certificate keeps whole seconds): a test of what reads the expiry
// picks one a renewal would change.
func (ca *CA) SVIDUntil(tb testing.TB, id spiffeid.ID, notAfter time.Time) *x509svid.SVID {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber: serial(tb),
		URIs:         []*url.URL{id.URL()},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	svid, err := x509svid.ParseRaw(der, pkcs8)
	if err != nil {
		tb.Fatal(err)
	}
	return svid
}

// Source is a static mtls.Source: one SVID and one bundle, each of which a
// test may replace at any time.
type Source struct {
	svid   atomic.Pointer[x509svid.SVID]
	bundle atomic.Pointer[x509bundle.Bundle]
}

// Source returns a Source holding a fresh SVID of service and the CA's
// bundle.
func (ca *CA) Source(tb testing.TB, service string) *Source {
	tb.Helper()
	s := &Source{}
	s.SetSVID(ca.SVID(tb, service))
	s.SetBundle(ca.Bundle())
	return s
}

// SetSVID replaces the SVID the next handshake presents.
func (s *Source) SetSVID(svid *x509svid.SVID) { s.svid.Store(svid) }

// SetBundle replaces the roots the next handshake verifies against.
func (s *Source) SetBundle(b *x509bundle.Bundle) { s.bundle.Store(b) }

// GetX509SVID implements x509svid.Source.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) { return s.svid.Load(), nil }

// GetX509BundleForTrustDomain implements x509bundle.Source: the bundle if
// it is td's, else an error.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b := s.bundle.Load()
	if b.TrustDomain() != td {
		return nil, fmt.Errorf("mtlstest: no bundle for trust domain %s", td)
	}
	return b, nil
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func serial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// Serve runs a gRPC server with the standard health service (serving)
// over cfg on a loopback port until the test ends, and returns its
// address. opts are further server options, an interceptor that looks at
// the caller, say.
func Serve(tb testing.TB, cfg *tls.Config, opts ...grpc.ServerOption) string {
	tb.Helper()
	lis, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(cfg))}, opts...)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	tb.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}
