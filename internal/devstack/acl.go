package devstack

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/consul/api"
)

// WithConsulACL starts the agent with ACLs enabled and default policy deny,
// bootstrapped with a management token generated for it
// (ManagementToken), which the agent also uses as its own token (a dev
// agent: a production agent's token only writes its node). Connect's CA is
// on in -dev mode either way. A Restart keeps the management token but, as
// every restart of a dev agent, loses the tokens made since
// (ServiceToken). CA roots need no token; everything else does.
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
}`, o.aclToken, o.aclToken)}
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
	w := (&api.WriteOptions{}).WithContext(ctx)
	policy, _, err := client.ACL().PolicyCreate(&api.ACLPolicy{Name: name, Rules: rules}, w)
	if err != nil {
		return "", fmt.Errorf("token %s: policy: %w", name, err)
	}
	token, _, err := client.ACL().TokenCreate(&api.ACLToken{
		Description: "devstack: " + name,
		Policies:    []*api.ACLTokenPolicyLink{{ID: policy.ID}},
	}, w)
	if err != nil {
		return "", fmt.Errorf("token %s: %w", name, err)
	}
	return token.SecretID, nil
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
