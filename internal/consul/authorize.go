package consul

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/singleflight"
)

// WithAuthorization sets how long an Authorizer keeps the agent's answer
// for a (caller, target) pair, allowed or denied (default 1 s; 0 asks the
// agent on every call), and how long a call waits for the agent's answer
// before it fails (default 1 s).
//
// A change of intention applies to calls at most ttl after the agent has
// it. The agent follows intentions with a blocking query of its own, so it
// has a change within milliseconds of the servers (TestIntentionChange
// measures the whole delay).
func WithAuthorization(ttl, timeout time.Duration) Option {
	return func(o *options) { o.authzTTL, o.authzTimeout = ttl, timeout }
}

// Authorizer answers whether one service may call another from Consul's
// intentions, by asking the local agent (/v1/agent/connect/authorize, which
// answers from the agent's own cache of the intentions and the default
// policy, so it keeps answering while the servers are away).
//
// Answers are cached per (caller, target) for WithAuthorization's TTL;
// concurrent calls for a pair whose answer expired share one request.
//
// When the agent does not answer (down, restarting, hung, or refusing the
// token), a pair it decided before keeps its last decision, asked again
// after another TTL: the policy Envoy follows with its last RBAC config
// while xDS is away, and the agent itself with its cached intentions while
// the servers are. Otherwise an agent restart would fail every call between
// services that were allowed a second earlier. A pair never decided gets
// the error: the server fails closed. The outage is logged once at WARN,
// its end at INFO. The cache holds one entry per pair seen; callers are
// services that passed the mTLS handshake, so pairs are few.
type Authorizer struct {
	agent   *api.Agent
	prefix  string // caller URIs are prefix + "/svc/" + caller
	ttl     time.Duration
	timeout time.Duration
	log     *log.Helper

	flight singleflight.Group
	mu     sync.Mutex
	cache  map[pair]decision
	// away is set while the agent does not answer and a last decision is
	// served, so the outage is logged once.
	away bool
}

type pair struct{ caller, target string }

type decision struct {
	allowed bool
	reason  string
	expires time.Time
}

// NewAuthorizer returns an Authorizer on client's agent. self is the
// server's own SPIFFE ID (CertSource.ID): a caller's identity is written in
// its trust domain, namespace and datacenter,
// spiffe://<td>/ns/default/dc/<dc>/svc/<caller>, since the agent wants a
// certificate URI and matches intentions on the service (and namespace)
// only. The ACL token needs service:write on every target it asks about:
// the server's own service.
func NewAuthorizer(client *api.Client, self spiffeid.ID, opts ...Option) (*Authorizer, error) {
	path := self.Path()
	i := strings.LastIndex(path, "/svc/")
	if self.IsZero() || i < 0 {
		return nil, fmt.Errorf("consul: authorizer: %q is not a Consul service identity", self)
	}
	o := newOptions(opts)
	return &Authorizer{
		agent:   client.Agent(),
		prefix:  self.TrustDomain().IDString() + path[:i],
		ttl:     o.authzTTL,
		timeout: o.authzTimeout,
		log:     log.NewHelper(o.logger),
		cache:   make(map[pair]decision),
	}, nil
}

// Authorize reports whether caller may call target, with the agent's
// reason ("Matched L4 intention: order => user (allow)", "Default behavior
// configured by ACLs"). err is set when the agent did not answer (down,
// slow, or refusing the token): no decision was made.
func (a *Authorizer) Authorize(ctx context.Context, caller, target string) (allowed bool, reason string, err error) {
	k := pair{caller, target}
	a.mu.Lock()
	d, ok := a.cache[k]
	a.mu.Unlock()
	if ok && time.Now().Before(d.expires) {
		return d.allowed, d.reason, nil
	}

	// The request runs on its own: api's ConnectAuthorize takes no
	// context, so a call that stops waiting cannot cancel it. Sharing it
	// per pair keeps a hung agent to one request per pair at a time.
	ch := a.flight.DoChan(caller+"\x00"+target, func() (any, error) { return a.ask(k) })
	timer := time.NewTimer(a.timeout)
	defer timer.Stop()
	select {
	case res := <-ch:
		if res.Err != nil {
			return a.lastKnown(k, d, ok, res.Err)
		}
		d := res.Val.(decision)
		return d.allowed, d.reason, nil
	case <-timer.C:
		return a.lastKnown(k, d, ok, fmt.Errorf("consul: authorize %s -> %s: the agent did not answer within %s", caller, target, a.timeout))
	case <-ctx.Done():
		return false, "", fmt.Errorf("consul: authorize %s -> %s: %w", caller, target, ctx.Err())
	}
}

// ask asks the agent and caches a decision.
func (a *Authorizer) ask(k pair) (decision, error) {
	res, err := a.agent.ConnectAuthorize(&api.AgentAuthorizeParams{
		Target:        k.target,
		ClientCertURI: a.prefix + "/svc/" + k.caller,
	})
	if err != nil {
		var se api.StatusError
		if errors.As(err, &se) && se.Code == http.StatusForbidden {
			err = fmt.Errorf("the ACL token needs service:write on %s to read its intentions: %w", k.target, err)
		}
		return decision{}, fmt.Errorf("consul: authorize %s -> %s: %w", k.caller, k.target, err)
	}
	d := decision{allowed: res.Authorized, reason: res.Reason, expires: time.Now().Add(a.ttl)}
	a.mu.Lock()
	if a.ttl > 0 {
		a.cache[k] = d
	}
	back := a.away
	a.away = false
	a.mu.Unlock()
	if back {
		a.log.Info("consul: authorize: the agent answers again; decisions follow the intentions")
	}
	return d, nil
}

// lastKnown answers a call whose decision the agent could not give (err):
// the pair's last decision d if known, kept for another TTL before the
// agent is asked again, or err.
func (a *Authorizer) lastKnown(k pair, d decision, known bool, err error) (allowed bool, reason string, _ error) {
	if !known {
		return false, "", err
	}
	a.mu.Lock()
	// A fresher answer that landed meanwhile wins over the extension.
	if cur := a.cache[k]; cur.expires.Equal(d.expires) {
		extended := d
		extended.expires = time.Now().Add(a.ttl)
		a.cache[k] = extended
	}
	first := !a.away
	a.away = true
	a.mu.Unlock()
	if first {
		a.log.Warnf("%v; serving the last decision of each pair until it answers (pairs never decided fail closed)", err)
	}
	return d.allowed, d.reason + " (last known: the agent does not answer)", nil
}
