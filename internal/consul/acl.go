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

// operatorError returns err explained if it is one that waiting does not
// fix but an operator can, while the process runs (so callers still
// retry, and log it as an error): an ACL refusal, explained by aclHint, or
// a TLS setup the agent and this client disagree on, explained by the
// setting to check. For other errors (agent down, timeouts) it returns nil.
func operatorError(err error, aclHint string) error {
	var (
		se      api.StatusError
		verify  *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		op      *net.OpError
	)
	switch {
	case errors.As(err, &se) && se.Code == http.StatusForbidden:
		return fmt.Errorf("%s: %w", aclHint, err)
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &host):
		return fmt.Errorf("the agent's certificate is not trusted: check CONSUL_CACERT (registry.consul.tls.ca_file) and the address: %w", err)
	case errors.As(err, &op) && op.Op == "remote error":
		// A TLS alert from the agent: with verify_incoming it wants a
		// client certificate signed by its CA.
		return fmt.Errorf("the agent refused the TLS handshake: check CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY (registry.consul.tls.cert_file, key_file): %w", err)
	}
	return nil
}
