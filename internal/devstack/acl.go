package devstack

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// WithConsulACL starts the agent with ACLs enabled and default policy deny,
// bootstrapped with a management token generated for it
// (ManagementToken), which the agent also uses as its own token (a dev
// agent: a production agent's token only writes its node). CA roots need
// no token; everything else does.
//
// Connect's CA is on in -dev mode either way; with ACLs it is given a
// cluster ID, key and root certificate made once per ConsulAgent, so that a
// Restart keeps the trust domain and the certificates issued before it, and
// Restart writes again the tokens (same secrets) and intentions made through
// the agent (PolicyToken, ServiceToken, Allow): a dev agent keeps its state
// in memory only, but a real agent's restart loses none of it, since it
// lives on the servers. A secure stack must survive the agent restarts the
// chaos suite makes, as it would in production.
func WithConsulACL() ConsulOption {
	return func(o *consulOptions) { o.aclToken = newUUID() }
}

// ManagementToken is the management token of an agent started
// WithConsulACL, "" otherwise.
func (a *ConsulAgent) ManagementToken() string { return a.opts.aclToken }

// aclArgs are the agent's ACL flags, none without WithConsulACL.
func (o consulOptions) aclArgs() []string {
	if o.aclToken == "" {
		return nil
	}
	return []string{"-hcl=" + fmt.Sprintf(`acl {
  enabled = true
  default_policy = "deny"
  tokens {
    initial_management = %q
    agent = %q
  }
}
connect {
  enabled = true
  ca_provider = "consul"
  ca_config {
    cluster_id = %q
    private_key = %q
    root_cert = %q
  }
}`, o.aclToken, o.aclToken, o.ca.clusterID, o.ca.keyPEM, o.ca.certPEM)}
}

// devCA is a Connect CA of Consul's built-in provider, made by devstack so
// that it outlives the agent process: its trust domain is
// <clusterID>.consul, as Consul names it.
type devCA struct {
	clusterID       string
	keyPEM, certPEM string
}

// newDevCA makes a P-256 key and a self-signed root shaped as Consul's own
// (ca.ConsulProvider.generateCA): the SPIFFE signing ID as URI, CA key
// usages, ten years.
func newDevCA() (*devCA, error) {
	clusterID := newUUID()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "devstack Consul CA " + clusterID[:8]},
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: clusterID + ".consul"}},
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().AddDate(10, 0, 0),
	}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	return &devCA{
		clusterID: clusterID,
		keyPEM:    string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})),
		certPEM:   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})),
	}, nil
}

// ServicePolicyRules is the least ACL policy of a Rampart instance of
// service that calls the services in calls, as found by the tests of
// internal/consul against an agent with default deny:
//
//   - service:write on itself: register and deregister its instance with
//     its health check, get its leaf certificate from Connect's CA, and ask
//     the agent whether a caller may call it (the intentions of a service
//     are read with write on it).
//   - service:read on each service it calls, to discover their instances.
//   - node:read on every node: the health endpoint silently drops the
//     instances on nodes the token cannot read, so without it discovery
//     finds nobody, without an error.
//
// The CA roots need no permission.
func ServicePolicyRules(service string, calls ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "service %q { policy = \"write\" }\n", service)
	for _, c := range calls {
		fmt.Fprintf(&b, "service %q { policy = \"read\" }\n", c)
	}
	b.WriteString("node_prefix \"\" { policy = \"read\" }\n")
	return b.String()
}

// ServiceToken creates, on an agent started WithConsulACL, a policy with
// ServicePolicyRules(service, calls...) and a token with it, and returns the
// token's secret.
func (a *ConsulAgent) ServiceToken(ctx context.Context, service string, calls ...string) (string, error) {
	return a.PolicyToken(ctx, "rampart-"+service, ServicePolicyRules(service, calls...))
}

// PolicyToken creates a policy called name with rules and a token with it,
// and returns the token's secret. Creating a name again replaces nothing:
// it fails, as Consul refuses duplicate policy names (UpdatePolicy changes
// one).
func (a *ConsulAgent) PolicyToken(ctx context.Context, name, rules string) (string, error) {
	client, err := a.managementClient()
	if err != nil {
		return "", fmt.Errorf("token %s: %w", name, err)
	}
	rec := &tokenRecord{name: name, rules: rules, accessor: newUUID(), secret: newUUID()}
	if err := rec.write(ctx, client); err != nil {
		return "", err
	}
	a.mu.Lock()
	a.tokens = append(a.tokens, rec)
	a.mu.Unlock()
	return rec.secret, nil
}

// tokenRecord is a policy and its token as PolicyToken made them, kept to
// be written again after a Restart.
type tokenRecord struct {
	name, rules      string
	accessor, secret string
}

func (r *tokenRecord) write(ctx context.Context, client *api.Client) error {
	w := (&api.WriteOptions{}).WithContext(ctx)
	policy, _, err := client.ACL().PolicyCreate(&api.ACLPolicy{Name: r.name, Rules: r.rules}, w)
	if err != nil {
		return fmt.Errorf("token %s: policy: %w", r.name, err)
	}
	_, _, err = client.ACL().TokenCreate(&api.ACLToken{
		AccessorID:  r.accessor,
		SecretID:    r.secret,
		Description: "devstack: " + r.name,
		Policies:    []*api.ACLTokenPolicyLink{{ID: policy.ID}},
	}, w)
	if err != nil {
		return fmt.Errorf("token %s: %w", r.name, err)
	}
	return nil
}

// Allow writes the intention caller -> callee, allow (AllowIntention with
// the management token), and writes it again after every Restart.
func (a *ConsulAgent) Allow(ctx context.Context, caller, callee string) error {
	client, err := a.managementClient()
	if err != nil {
		return fmt.Errorf("intention %s -> %s: %w", caller, callee, err)
	}
	if err := AllowIntention(ctx, client, caller, callee); err != nil {
		return err
	}
	a.mu.Lock()
	a.allowed = append(a.allowed, [2]string{caller, callee})
	a.mu.Unlock()
	return nil
}

// replayLocked writes again, on a restarted agent with ACLs, the tokens and
// intentions made through it; a.mu is held.
func (a *ConsulAgent) replayLocked(ctx context.Context) error {
	if a.opts.aclToken == "" {
		return nil
	}
	client, err := a.managementClient()
	if err != nil {
		return err
	}
	for _, rec := range a.tokens {
		if err := rec.write(ctx, client); err != nil {
			return err
		}
	}
	for _, pair := range a.allowed {
		if err := AllowIntention(ctx, client, pair[0], pair[1]); err != nil {
			return err
		}
	}
	return nil
}

// UpdatePolicy replaces the rules of the policy called name, as an
// operator fixing a token's policy would: every token with it has the new
// rules at once (the dev agent is its own ACL server, nothing caches them).
func (a *ConsulAgent) UpdatePolicy(ctx context.Context, name, rules string) error {
	client, err := a.managementClient()
	if err != nil {
		return fmt.Errorf("policy %s: %w", name, err)
	}
	policy, _, err := client.ACL().PolicyReadByName(name, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("policy %s: %w", name, err)
	}
	if policy == nil {
		return fmt.Errorf("policy %s: not found", name)
	}
	policy.Rules = rules
	if _, _, err := client.ACL().PolicyUpdate(policy, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("policy %s: %w", name, err)
	}
	a.mu.Lock()
	for _, rec := range a.tokens {
		if rec.name == name {
			rec.rules = rules
		}
	}
	a.mu.Unlock()
	return nil
}

// managementClient is a client of the agent with the management token and
// no idle connections left behind.
func (a *ConsulAgent) managementClient() (*api.Client, error) {
	if a.opts.aclToken == "" {
		return nil, errors.New("the agent runs without ACLs (WithConsulACL)")
	}
	cfg := api.DefaultNonPooledConfig()
	cfg.Address, cfg.Token = a.Addr(), a.opts.aclToken
	cfg.Transport.DisableKeepAlives = true
	return api.NewClient(cfg)
}

// tokenTransport adds the management token to every request devstack
// itself makes of an agent with ACLs.
type tokenTransport struct {
	next  http.RoundTripper
	token string
}

func (t tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("X-Consul-Token", t.token)
	return t.next.RoundTrip(req)
}

// withToken returns rt, sending the management token if there is one.
func (o consulOptions) withToken(rt http.RoundTripper) http.RoundTripper {
	if o.aclToken == "" {
		return rt
	}
	return tokenTransport{next: rt, token: o.aclToken}
}

// newUUID is a random UUID (version 4), the form Consul wants for a token.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
