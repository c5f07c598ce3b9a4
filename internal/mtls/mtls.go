// Package mtls builds the TLS configurations of Rampart's gRPC servers and
// clients from any source of X.509 SVIDs and trust bundles: Consul's CA
// (internal/consul's CertSource) in a service, a test CA in tests
// (mtlstest). go-spiffe does the verification; this package only states who
// is accepted.
//
// Policy:
//   - A server requires a client certificate and verifies it against the
//     current roots: any SPIFFE ID of the server's own trust domain may
//     connect. Who may call what is decided per call by the authorization
//     middleware (internal/middleware/authz), from the caller's service
//     name (rpc.CallerService), not by the handshake.
//   - A client verifies the server's chain against the current roots and
//     that its SPIFFE ID names the service it meant to call (the path ends
//     in /svc/<service>, in its own trust domain). Host names and IP
//     addresses are never checked: instances come and go at addresses
//     discovery hands out, and a certificate names a service, not a host.
//   - The certificate and the roots are read from the source on every
//     handshake, so a rotation applies to the next connection with no
//     restart; connections already open keep the identity they were opened
//     with, which TLS never re-checks.
//   - TLS 1.3 only: every peer is a Rampart process or a Go tool
//     (grpcurl, ghz), and 1.3 has no weak suites to configure away.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/rampart-go/rampart/internal/rpc"
)

// Source hands out the process's current SVID (its certificate chain and
// key) and the trust bundle of a trust domain. Both are called on every
// handshake, so they must be cheap and safe for concurrent use.
type Source interface {
	x509svid.Source
	x509bundle.Source
}

// ServerConfig returns the TLS configuration of a gRPC server that presents
// src's current SVID and accepts any client whose certificate chains to
// src's roots with a SPIFFE ID of the server's own trust domain. Give it to
// the server as is (Kratos' grpc.TLSConfig, or credentials.NewTLS).
func ServerConfig(src Source) *tls.Config {
	cfg := tlsconfig.MTLSServerConfig(src, src, sameTrustDomain(src, nil))
	cfg.MinVersion = tls.VersionTLS13
	return cfg
}

// ClientConfig returns the TLS configuration of a gRPC client of service:
// it presents src's current SVID and accepts only a server whose
// certificate chains to src's roots and names service in the client's own
// trust domain (ServiceOf).
func ClientConfig(src Source, service string) *tls.Config {
	cfg := tlsconfig.MTLSClientConfig(src, src, sameTrustDomain(src, func(id spiffeid.ID) error {
		if got, ok := ServiceOf(id); !ok || got != service {
			return fmt.Errorf("mtls: server presented %s, want service %q", id, service)
		}
		return nil
	}))
	cfg.MinVersion = tls.VersionTLS13
	return cfg
}

// ServiceOf is the service a Consul service identity names:
// spiffe://<trust domain>/ns/<namespace>/dc/<datacenter>/svc/<service>, or
// that with /ap/<partition> in front. ok is false for any other identity (a
// Consul agent's, a gateway's, a SPIFFE ID of another issuer).
func ServiceOf(id spiffeid.ID) (string, bool) {
	if id.IsZero() {
		return "", false
	}
	return rpc.ServiceOfURI(id.URL())
}

// sameTrustDomain authorizes a peer whose verified ID is in the trust
// domain of src's own current SVID and, if also is set, passes it.
// Verification already used only the bundle src returns for the peer's
// trust domain; this keeps a source that federates several from letting a
// peer of another domain in.
func sameTrustDomain(src x509svid.Source, also func(spiffeid.ID) error) tlsconfig.Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		own, err := src.GetX509SVID()
		if err != nil {
			return fmt.Errorf("mtls: own SVID: %w", err)
		}
		if td := own.ID.TrustDomain(); id.TrustDomain() != td {
			return fmt.Errorf("mtls: peer %s is not in trust domain %s", id, td)
		}
		if also != nil {
			return also(id)
		}
		return nil
	}
}
