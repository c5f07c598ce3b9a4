package rpc

import (
	"context"
	"net/url"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// CallerService is the Consul service name of the caller of the incoming
// call in ctx, read from the SPIFFE ID in the URI SAN of the client
// certificate its connection presented (see ServiceOfURI). ok is false for a
// plaintext connection, a TLS connection without a client certificate, and
// a certificate that names no Consul service (an agent's or a gateway's).
//
// It trusts the transport: the name is an identity only if the server's TLS
// configuration verified the certificate against the trusted roots during
// the handshake, as internal/mtls's ServerConfig does. It does not look at
// State.VerifiedChains, because SPIFFE verification happens in
// VerifyPeerCertificate and leaves them empty. It allocates nothing: it is
// read by the access log and the server span on every call.
func CallerService(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || !info.State.HandshakeComplete || len(info.State.PeerCertificates) == 0 {
		return "", false
	}
	uris := info.State.PeerCertificates[0].URIs
	if len(uris) != 1 { // a SPIFFE certificate has exactly one URI SAN
		return "", false
	}
	return ServiceOfURI(uris[0])
}

// ServiceOfURI is the service a Consul service identity names. Consul's CA
// writes it into the URI SAN of every leaf certificate as
//
//	spiffe://<trust domain>/ns/<namespace>/dc/<datacenter>/svc/<service>
//
// with /ap/<partition> in front of /ns for a non-default admin partition
// (Consul Enterprise). ok is false for any other URI: another scheme, no
// trust domain, or another kind of identity (an agent's
// /agent/client/dc/<dc>/id/<node>, a mesh gateway's).
//
// The namespace and datacenter are not returned: intentions match on the
// service name (and namespace, always "default" outside Enterprise).
func ServiceOfURI(u *url.URL) (string, bool) {
	if u == nil || u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	path := u.Path
	if _, rest, ok := segment(path, "ap"); ok {
		path = rest
	}
	_, rest, ok := segment(path, "ns")
	if !ok {
		return "", false
	}
	if _, rest, ok = segment(rest, "dc"); !ok {
		return "", false
	}
	svc, rest, ok := segment(rest, "svc")
	if !ok || rest != "" {
		return "", false
	}
	return svc, true
}

// segment cuts "/<key>/<value>" off the front of path: value is non-empty
// and holds no slash; rest is what follows it ("" or "/...").
func segment(path, key string) (value, rest string, ok bool) {
	after, ok := strings.CutPrefix(path, "/"+key+"/")
	if !ok {
		return "", "", false
	}
	value, rest = after, ""
	if i := strings.IndexByte(after, '/'); i >= 0 {
		value, rest = after[:i], after[i:]
	}
	return value, rest, value != ""
}
