package devstack

import (
	"fmt"
	"net"
	"strconv"
)

// ConsulTLS is the HTTPS API of an agent started WithConsulHTTPS: PEM
// files of the CA and of the agent's certificate (with 127.0.0.1 among
// its addresses) and key, which the caller makes, e.g. with `consul tls
// ca create` and `consul tls cert create -server`.
type ConsulTLS struct {
	CAFile, CertFile, KeyFile string
	// VerifyIncoming makes the agent want a client certificate signed by
	// CAFile on every HTTPS request.
	VerifyIncoming bool
}

// WithConsulHTTPS opens the agent's HTTPS API on a free port as well
// (HTTPSAddr), with the certificate tls names. The HTTP API stays on:
// devstack waits for readiness through it and the management calls use
// it, so a test of the HTTPS path points only its clients there.
func WithConsulHTTPS(tls ConsulTLS) ConsulOption {
	return func(o *consulOptions) { o.https = &tls }
}

// HTTPSAddr is the HTTPS API base URL, e.g. https://127.0.0.1:8501, the
// form CONSUL_HTTP_ADDR takes for it; "" without WithConsulHTTPS.
func (a *ConsulAgent) HTTPSAddr() string {
	if a.opts.https == nil {
		return ""
	}
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(a.ports.https))
}

// httpsArgs are the agent's HTTPS flags, none without WithConsulHTTPS. The
// tls.https block touches only the HTTP API: the dev agent's own RPC
// stays plaintext, as it would need certificates of another shape.
func (o consulOptions) httpsArgs(port int) []string {
	t := o.https
	if t == nil {
		return nil
	}
	return []string{"-https-port", strconv.Itoa(port), "-hcl=" + fmt.Sprintf(`tls {
  https {
    ca_file = %q
    cert_file = %q
    key_file = %q
    verify_incoming = %t
  }
}`, t.CAFile, t.CertFile, t.KeyFile, t.VerifyIncoming)}
}
