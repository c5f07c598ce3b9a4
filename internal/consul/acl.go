package consul

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

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
	)
	switch {
	case errors.As(err, &se) && se.Code == http.StatusForbidden:
		return fmt.Errorf("%s: %w", aclHint, err)
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &host):
		return fmt.Errorf("the agent's certificate is not trusted: check CONSUL_CACERT (registry.consul.tls.ca_file) and the address: %w", err)
	case isAlert(err), refusesHandshake(err):
		// A TLS alert from the agent: with verify_incoming it wants a
		// client certificate signed by its CA.
		return fmt.Errorf("the agent refused the TLS handshake: check CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY (registry.consul.tls.cert_file, key_file): %w", err)
	}
	return nil
}

// probeTimeout bounds refusesHandshake's connection (dial, handshake and
// the wait for the agent's answer).
const probeTimeout = time.Second

// refusesHandshake reports whether err is a transport failure of a
// request over HTTPS to an agent that refuses a TLS handshake without a
// client certificate it trusts. In TLS 1.3 the client's handshake ends
// before the server has checked the client's certificate, so the agent's
// refusal (an alert, then close) reaches a client that is already writing
// its request (HTTP/2 writes its preface at once) as a reset, a broken
// pipe or "client conn could not be established", not as the alert: which
// one depends on timing. A second connection that only reads after its
// handshake reads the alert. Called on failures only, which are retried
// with backoff, so the probe costs one connection per retry.
func refusesHandshake(err error) bool {
	var (
		ue *url.Error
		se api.StatusError
	)
	if !errors.As(err, &ue) || errors.As(err, &se) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	u, perr := url.Parse(ue.URL)
	if perr != nil || u.Scheme != "https" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The probe sends nothing and only learns whether the agent ends
		// the handshake; a certificate it did not trust would have failed
		// the real request before this one, as a verification error.
		InsecureSkipVerify: true, //nolint:gosec // see above: nothing is sent
	}}
	conn, derr := d.DialContext(ctx, "tcp", u.Host)
	if derr != nil {
		return isAlert(derr) // TLS 1.2 checks the client's certificate in the handshake
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetReadDeadline(time.Now().Add(probeTimeout))
	_, rerr := conn.Read(make([]byte, 1))
	return isAlert(rerr)
}

// isAlert reports whether err is a TLS alert received from the peer.
func isAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}
