package middleware

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/keepalive"
	"gopkg.in/yaml.v3"

	"github.com/rampart-go/rampart/internal/middleware/breaker"
	"github.com/rampart-go/rampart/internal/middleware/outlier"
	"github.com/rampart-go/rampart/internal/middleware/retry"
)

// ClientConfigs are the clients.* entries of a config file by name.
type ClientConfigs map[string]ClientConfig

// ClientConfig configures the connection to another service and the policy
// of the calls made through it. Methods override the policy per full method
// name; a key an override leaves out keeps the client's value.
type ClientConfig struct {
	// Target is a Kratos discovery URL such as discovery:///user.
	Target    string    `yaml:"target"`
	Keepalive Keepalive `yaml:"keepalive"`
	// IdleTimeout is how long the connection may go without a call before
	// gRPC puts it in idle mode (connections closed, discovery watch
	// stopped); 0 keeps it active for good.
	IdleTimeout time.Duration      `yaml:"idle_timeout"`
	Budget      retry.BudgetConfig `yaml:"budget"`
	// Outlier is per-instance outlier ejection; the policy and its defaults
	// are the outlier package's.
	Outlier outlier.Config `yaml:"outlier"`
	Policy  `yaml:",inline"`
	Methods map[string]MethodPolicy `yaml:"methods"`
}

// Policy is how one call is made: its time limits, retries and breaker.
type Policy struct {
	// Timeout bounds one logical call, retries included; a caller's shorter
	// deadline wins.
	Timeout time.Duration `yaml:"timeout"`
	// AttemptTimeout bounds one attempt, so a hung instance costs one
	// attempt and the retry goes elsewhere.
	AttemptTimeout time.Duration  `yaml:"attempt_timeout"`
	Retry          retry.Config   `yaml:"retry"`
	Breaker        breaker.Config `yaml:"breaker"`
}

// MethodPolicy is one method's override: the call policy, and hedging,
// which only a method can have (it is for NO_SIDE_EFFECTS methods only, and
// a client names methods of every level).
type MethodPolicy struct {
	Policy `yaml:",inline"`
	// Hedging replaces retry for the method when its delay is set (gRPC
	// A6: a method has a retry policy or a hedging policy, not both).
	Hedging retry.HedgingConfig `yaml:"hedging"`

	// What the override wrote itself, as the file said it: A6's rule
	// refuses an override that writes both.
	retrySet, hedgingSet bool `yaml:"-"`
}

// hedged reports whether the override asks for hedging.
func (m MethodPolicy) hedged() bool { return m.hedgingSet || m.Hedging.Enabled() }

// Keepalive pings idle connections so a peer that vanished without closing
// them is noticed in Time+Timeout, without waiting for Consul.
type Keepalive struct {
	Time    time.Duration `yaml:"time"`
	Timeout time.Duration `yaml:"timeout"`
}

// Params are the gRPC client keepalive parameters. They ping idle
// connections too: the point is to find a peer that vanished without
// closing the connection before the next call pays for it, and a connection
// with a call in flight would notice soon anyway. The server must permit it
// (server.grpc.keepalive_min_time).
func (k Keepalive) Params() keepalive.ClientParameters {
	return keepalive.ClientParameters{Time: k.Time, Timeout: k.Timeout, PermitWithoutStream: true}
}

// DefaultClientConfig is the client every clients.<name> entry starts from,
// composed of each policy's own defaults. It has no target: that has no
// sensible default.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{
		Keepalive: Keepalive{Time: 10 * time.Second, Timeout: 2 * time.Second},
		// gRPC's own default.
		IdleTimeout: 30 * time.Minute,
		Budget:      retry.DefaultBudgetConfig(),
		Outlier:     outlier.DefaultConfig(),
		Policy: Policy{
			Timeout:        2 * time.Second,
			AttemptTimeout: 500 * time.Millisecond,
			Retry:          retry.DefaultConfig(),
			Breaker:        breaker.DefaultConfig(),
		},
	}
}

// UnmarshalYAML starts from DefaultClientConfig, and each method override
// from the client's own policy, so a file states only what differs.
func (c *ClientConfig) UnmarshalYAML(n *yaml.Node) error {
	var raw struct {
		Target      string         `yaml:"target"`
		Keepalive   yaml.Node      `yaml:"keepalive"`
		IdleTimeout *time.Duration `yaml:"idle_timeout"`
		Budget      yaml.Node      `yaml:"budget"`
		Outlier     yaml.Node      `yaml:"outlier"`
		Policy      `yaml:",inline"`
		Methods     map[string]yaml.Node `yaml:"methods"`
	}
	*c = DefaultClientConfig()
	raw.Policy = c.Policy
	if err := n.Decode(&raw); err != nil {
		return err
	}
	c.Target, c.Policy = raw.Target, raw.Policy
	if raw.IdleTimeout != nil {
		c.IdleTimeout = *raw.IdleTimeout
	}
	// Decoding a sub-node onto the defaults keeps the keys it leaves out.
	for _, sub := range []struct {
		n   *yaml.Node
		dst any
	}{{&raw.Keepalive, &c.Keepalive}, {&raw.Budget, &c.Budget}, {&raw.Outlier, &c.Outlier}} {
		if sub.n.Kind == 0 {
			continue
		}
		if err := sub.n.Decode(sub.dst); err != nil {
			return err
		}
	}
	if len(raw.Methods) > 0 {
		c.Methods = make(map[string]MethodPolicy, len(raw.Methods))
	}
	for name, node := range raw.Methods {
		p := MethodPolicy{Policy: c.Policy, Hedging: retry.DefaultHedgingConfig()}
		if err := node.Decode(&p); err != nil {
			return err
		}
		p.retrySet, p.hedgingSet = hasKey(&node, "retry"), hasKey(&node, "hedging")
		c.Methods[name] = p
	}
	return nil
}

// hasKey reports whether the mapping n writes key.
func hasKey(n *yaml.Node, key string) bool {
	if n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// fullMethod is a gRPC full method name, /package.Service/Method.
var fullMethod = regexp.MustCompile(`^/[A-Za-z_][\w.]*/[A-Za-z_]\w*$`)

// Validate reports every invalid value, each as "key: reason" with the key
// under clients.<name> ("retry.max_attempts: …",
// "methods./user.v1.UserService/GetUser.timeout: …"); the policies name
// their own fields.
func (c ClientConfig) Validate() error {
	var errs []error
	if u, err := url.Parse(c.Target); err != nil || u.Scheme != "discovery" || strings.Trim(u.Path, "/") == "" {
		errs = append(errs, fmt.Errorf("target: must look like discovery:///<service>, got %q", c.Target))
	}
	if c.Keepalive.Time <= 0 {
		errs = append(errs, errors.New("keepalive.time: must be > 0"))
	}
	if c.Keepalive.Timeout <= 0 {
		errs = append(errs, errors.New("keepalive.timeout: must be > 0"))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("idle_timeout: must be >= 0 (0: never idle), got %v", c.IdleTimeout))
	}
	errs = append(errs, under("budget", c.Budget.Validate())...)
	errs = append(errs, under("outlier", c.Outlier.Validate())...)
	errs = append(errs, validatePolicy(c.Policy)...)
	methods := make([]string, 0, len(c.Methods))
	for m := range c.Methods {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	for _, m := range methods {
		if !fullMethod.MatchString(m) {
			errs = append(errs, fmt.Errorf("methods.%s: must be a full method name like /user.v1.UserService/GetUser", m))
		}
		for _, err := range validateMethod(m, c.Methods[m]) {
			errs = append(errs, fmt.Errorf("methods.%s.%w", m, err))
		}
	}
	return errors.Join(errs...)
}

// validateMethod checks an override's policy and its hedging: valid
// values, only on a NO_SIDE_EFFECTS method, and never beside a retry block
// the override writes itself (gRPC A6: "Only one of retryPolicy or
// hedgingPolicy may be set").
func validateMethod(method string, p MethodPolicy) []error {
	errs := validatePolicy(p.Policy)
	if !p.hedged() {
		return errs
	}
	errs = append(errs, under("hedging", p.Hedging.Validate())...)
	if !retry.HasNoSideEffects(method) {
		errs = append(errs, errors.New("hedging: only a method its proto declares idempotency_level = NO_SIDE_EFFECTS may be hedged (its attempts run at once)"))
	}
	if p.retrySet {
		errs = append(errs, errors.New("hedging: a method has a retry policy or a hedging policy, not both (gRPC A6); remove this override's retry block"))
	}
	return errs
}

func validatePolicy(p Policy) []error {
	var errs []error
	if p.Timeout <= 0 {
		errs = append(errs, errors.New("timeout: must be > 0"))
	}
	if p.AttemptTimeout <= 0 {
		errs = append(errs, errors.New("attempt_timeout: must be > 0"))
	} else if p.AttemptTimeout > p.Timeout && p.Timeout > 0 {
		errs = append(errs, fmt.Errorf("attempt_timeout: must not exceed timeout (%s)", p.Timeout))
	}
	errs = append(errs, under("retry", p.Retry.Validate())...)
	return append(errs, under("breaker", p.Breaker.Validate())...)
}

// under puts each error of err, a single one or an errors.Join, under key:
// "max_attempts: …" becomes "retry.max_attempts: …".
func under(key string, err error) []error {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = fmt.Errorf("%s.%w", key, e)
	}
	return out
}
