package consul

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/hashicorp/consul/api"
)

// What a token lacks when the agent refuses (403) or filters (an empty
// answer marked X-Consul-Results-Filtered-By-ACLs), named in the logs so
// an operator knows which rule to add to the policy. An unknown token is
// refused with 403 too ("ACL not found"): the hint then still names what
// it would need.
func needWrite(service string) string { return "the ACL token needs service:write on " + service }

func needRead(service string) string {
	return "the ACL token needs service:read on " + service + " and node:read on its nodes (node_prefix \"\" read)"
}

// operatorError reports whether err is one that waiting does not fix but
// an operator can, while the process runs (so callers still retry, and
// log it as an error): an ACL refusal, to which it adds aclHint, or a TLS
// setup the agent and this client disagree on, to which it adds the
// setting to check. Other errors (agent down, timeouts) come back as they
// are, with false.
func operatorError(err error, aclHint string) (error, bool) {
	var (
		se      api.StatusError
		verify  *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		op      *net.OpError
	)
	switch {
	case errors.As(err, &se) && se.Code == http.StatusForbidden:
		return fmt.Errorf("%s: %w", aclHint, err), true
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &host):
		return fmt.Errorf("the agent's certificate is not trusted: check CONSUL_CACERT (registry.consul.tls.ca_file) and the address: %w", err), true
	case errors.As(err, &op) && op.Op == "remote error":
		// A TLS alert from the agent: with verify_incoming it wants a
		// client certificate signed by its CA.
		return fmt.Errorf("the agent refused the TLS handshake: check CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY (registry.consul.tls.cert_file, key_file): %w", err), true
	}
	return err, false
}
