// Package consul is a Consul registry for Kratos: Registry implements
// registry.Registrar and registry.Discovery on github.com/hashicorp/consul/api.
//
// Why not Kratos' contrib adapter: it checks only TCP or TTL, never delivers
// an empty instance list, cuts blocking queries every 10 s and fails start-up
// when Consul is down. This one registers a Consul-native gRPC health check
// against the standard grpc.health.v1 service (so NOT_SERVING and hung
// servers leave the passing set, not just dead ports; WithHTTPCheck checks a
// readiness path instead, for a gRPC port that takes only mTLS), never fails start-up
// or a watch because Consul is unreachable or refuses the ACL token or the TLS
// setup (it retries in the background, keeps the last known instances, and
// logs a refusal as an error naming what to fix), re-registers after a Consul agent restart
// and runs long blocking queries that deliver every change, including the
// empty set when the last instance leaves.
//
// For mTLS and authorization it also follows the service's identity from
// Consul's CA (CertSource: leaf certificate and roots, as go-spiffe
// sources) and answers from Consul's intentions whether one service may
// call another (Authorizer). Both talk to the local agent only, which
// caches certificates and intentions, so a server outage does not stop
// handshakes or authorization while the agent has them.
package consul

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/registry"
	"github.com/hashicorp/consul/api"

	"github.com/rampart-go/rampart/internal/rpc"
)

var (
	_ registry.Registrar = (*Registry)(nil)
	_ registry.Discovery = (*Registry)(nil)
)

// Keys this package owns in a Consul service's Meta. Instance metadata may
// not use them, so Discovery rebuilds ServiceInstance.Metadata exactly.
const (
	metaVersion        = "version"
	metaEndpointPrefix = "endpoint-" // endpoint-0, endpoint-1, … in order
)

// ErrClosed is returned by Register and Watch after Close.
var ErrClosed = errors.New("consul: registry closed")

// Option configures a Registry, a CertSource or an Authorizer; each reads
// the settings that concern it, as every option says.
type Option func(*options)

type options struct {
	checkInterval   time.Duration
	checkTimeout    time.Duration
	deregisterAfter time.Duration
	logger          log.Logger
	backoffInitial  time.Duration
	backoffMax      time.Duration
	tags            []string
	waitTime        time.Duration
	requestTimeout  time.Duration
	recoveryGrace   time.Duration
	startTimeout    time.Duration
	authzTTL        time.Duration
	authzTimeout    time.Duration
	httpCheckMeta   string // "" checks over gRPC
	httpCheckPath   string
}

// WithHealthCheck sets the gRPC health check's interval and timeout, and how
// long a check may stay critical before Consul removes the instance (0 keeps
// it forever). Defaults: 1 s, 1 s, 1 min: a crashed or hung instance leaves
// the passing set within about interval+timeout. Consul's minimum interval is
// 1 s and its reaper runs every 30 s, so deregistration takes ≥ 1 min anyway.
func WithHealthCheck(interval, timeout, deregisterCriticalAfter time.Duration) Option {
	return func(o *options) {
		o.checkInterval, o.checkTimeout, o.deregisterAfter = interval, timeout, deregisterCriticalAfter
	}
}

// WithHTTPCheck makes Consul check each instance with GET
// http://<addr><path> instead of the gRPC health check, where addr is the
// instance's metadata value under metaKey (a server's side port): for a
// server whose gRPC port takes only mutual TLS, which Consul's gRPC check
// cannot pass, since the agent has no client certificate to present. The
// path must answer 200 exactly while the gRPC health status is SERVING
// (a readiness probe), so a stopping instance leaves the passing set at
// the same moment. Interval, timeout and deregistration are
// WithHealthCheck's. An instance without that metadata cannot be
// registered.
func WithHTTPCheck(metaKey, path string) Option {
	return func(o *options) { o.httpCheckMeta, o.httpCheckPath = metaKey, path }
}

// WithLogger sets the logger of a Registry, a CertSource or an Authorizer
// (default: Kratos' global logger).
func WithLogger(logger log.Logger) Option {
	return func(o *options) { o.logger = logger }
}

// WithRetryBackoff sets the exponential backoff (with jitter) between retries
// while Consul is unreachable, for registrations, watches and a
// CertSource's blocking queries alike. Default: 100 ms doubling to 5 s.
func WithRetryBackoff(initial, maxDelay time.Duration) Option {
	return func(o *options) { o.backoffInitial, o.backoffMax = initial, maxDelay }
}

// WithTags adds Consul tags to every registration, beside version=<version>.
func WithTags(tags ...string) Option {
	return func(o *options) { o.tags = append(o.tags, tags...) }
}

// WithWaitTime sets how long one blocking query (a watch's, a CertSource's)
// may wait for a change (default 55 s, under the 60 s idle limits of common
// proxies; Consul adds up to 1/16 jitter).
func WithWaitTime(d time.Duration) Option {
	return func(o *options) { o.waitTime = d }
}

// WithRequestTimeout bounds each non-blocking call to the agent (register,
// the registration check, GetService without a deadline). Default 5 s.
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) { o.requestTimeout = d }
}

// WithRecoveryGrace sets how long a watcher that has just seen Consul come
// back (or its index go backwards, i.e. a new agent) holds its last known
// instances while Consul reports none: a restarted agent has lost every
// registration until the registrars put them back, about a second later.
// After the grace an empty set is delivered. Default 5 s.
func WithRecoveryGrace(d time.Duration) Option {
	return func(o *options) { o.recoveryGrace = d }
}

// Registry registers service instances with the local Consul agent and
// discovers the passing instances of a service. One Registry serves any
// number of instances and watchers; Close stops their background work.
type Registry struct {
	client *api.Client
	opts   options
	log    *log.Helper

	mu       sync.Mutex
	closed   bool
	regs     map[string]*keeper // by instance ID
	watchers map[*watcher]struct{}
	// known is the last set a watcher delivered, by service name. It
	// outlives the watcher: gRPC stops a channel's resolver when the channel
	// goes idle and builds a new one on the next call, and that call must
	// not depend on Consul answering at that moment.
	known map[string][]*registry.ServiceInstance
}

// newOptions applies opts over the defaults each option documents.
func newOptions(opts []Option) options {
	o := options{
		checkInterval:   time.Second,
		checkTimeout:    time.Second,
		deregisterAfter: time.Minute,
		backoffInitial:  100 * time.Millisecond,
		backoffMax:      5 * time.Second,
		waitTime:        55 * time.Second,
		requestTimeout:  5 * time.Second,
		recoveryGrace:   5 * time.Second,
		startTimeout:    30 * time.Second,
		authzTTL:        time.Second,
		authzTimeout:    time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = log.GetLogger()
	}
	o.backoffInitial = max(o.backoffInitial, time.Millisecond)
	o.backoffMax = max(o.backoffMax, o.backoffInitial)
	return o
}

// New returns a Registry on client. It does not contact Consul.
func New(client *api.Client, opts ...Option) *Registry {
	o := newOptions(opts)
	return &Registry{
		client:   client,
		opts:     o,
		log:      log.NewHelper(o.logger),
		regs:     make(map[string]*keeper),
		watchers: make(map[*watcher]struct{}),
		known:    make(map[string][]*registry.ServiceInstance),
	}
}

// keeper is the background loop that keeps one instance registered.
type keeper struct {
	cancel context.CancelFunc
	done   chan struct{}
	// registered is set once a registration succeeded; the loop writes it,
	// others read it only after stop.
	registered bool
}

func (k *keeper) stop() {
	k.cancel()
	<-k.done
}

// Register registers ins with the local agent: address and port of its
// first grpc:// (or TLS grpcs://) endpoint, tags version=<Version> (when set) plus WithTags,
// metadata plus the version and every endpoint (so Discovery rebuilds the
// instance exactly), and one gRPC health check on that address, initially
// passing: call it once the server listens, and the instance is
// discoverable at once.
//
// Register fails only for an instance that cannot be registered (no grpc
// endpoint, reserved metadata key) or whose definition Consul rejects (a
// 4xx other than 403): the instance's own fault, which no retry fixes.
// Anything an operator can fix while the instance runs is retried in the
// background, with backoff, until it succeeds or Deregister or Close is
// called, and Register returns nil: Consul unreachable (logged as a
// warning), and an ACL refusal, 403, or a TLS handshake with the agent
// failing on a certificate (logged as an error naming the permission the
// token lacks or the setting to check, again every refusalLogEvery while
// it lasts; the instance registers at the next retry after the fix).
// A service must start even while it cannot register. After success a
// light loop re-registers the instance if the agent loses it (a restarted
// dev agent loses everything). Registering an ID again replaces the
// earlier registration.
func (r *Registry) Register(ctx context.Context, ins *registry.ServiceInstance) error {
	reg, err := r.registration(ins)
	if err != nil {
		return fmt.Errorf("consul: register %s: %w", label(ins), err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if old := r.regs[ins.ID]; old != nil {
		old.stop()
		delete(r.regs, ins.ID)
	}

	err = r.put(ctx, reg)
	if err == nil {
		r.log.Infof("consul: registered %s at %s:%d", label(ins), reg.Address, reg.Port)
	} else if isRejected(err) {
		return fmt.Errorf("consul: register %s: %w", label(ins), err)
	}
	kctx, cancel := context.WithCancel(context.Background())
	k := &keeper{cancel: cancel, done: make(chan struct{}), registered: err == nil}
	r.regs[ins.ID] = k
	go func() {
		defer close(k.done)
		r.keep(kctx, k, reg, label(ins), err)
	}()
	return nil
}

// logPutFailure logs a failed registration as o decides: a refusal as an
// error that says the instance is not discoverable, an outage as a
// warning.
func (r *Registry) logPutFailure(o *outage, name string, err error) {
	refused, log, err := o.fail(err)
	switch {
	case !log:
	case refused:
		lasting := ""
		if d := o.lasted(); d >= time.Second {
			lasting = " (for " + d.Round(time.Second).String() + ")"
		}
		r.log.Errorf("consul: register %s refused%s: %v; not registered (not discoverable), retrying in background",
			name, lasting, err)
	default:
		r.log.Warnf("consul: register %s: %v; retrying in background", name, err)
	}
}

// Deregister stops keeping ins registered and removes it from the agent.
// An instance the agent no longer knows counts as deregistered, and so does
// one whose registration never succeeded while the agent stays unreachable:
// there is nothing to remove, which is no error.
func (r *Registry) Deregister(ctx context.Context, ins *registry.ServiceInstance) error {
	if ins == nil || ins.ID == "" {
		return errors.New("consul: deregister: instance without ID")
	}
	neverRegistered := false
	r.mu.Lock()
	if k := r.regs[ins.ID]; k != nil {
		k.stop()
		delete(r.regs, ins.ID)
		neverRegistered = !k.registered
	}
	r.mu.Unlock()

	// Asked even when no registration succeeded: one that timed out may
	// still have reached the agent.
	ctx, cancel := r.withRequestTimeout(ctx)
	defer cancel()
	err := r.client.Agent().ServiceDeregisterOpts(ins.ID, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil && !isNotFound(err) {
		if neverRegistered {
			r.log.Infof("consul: %s was never registered, nothing to deregister (Consul still unreachable: %v)", label(ins), err)
			return nil
		}
		return fmt.Errorf("consul: deregister %s: %w", label(ins), err)
	}
	r.log.Infof("consul: deregistered %s", label(ins))
	return nil
}

// Close stops every background registration loop and watcher of r. It does
// not deregister: call Deregister for a graceful stop first. Idempotent.
func (r *Registry) Close() error {
	r.mu.Lock()
	r.closed = true
	regs := r.regs
	r.regs = make(map[string]*keeper)
	ws := r.watchers
	r.watchers = make(map[*watcher]struct{})
	r.mu.Unlock()
	for _, k := range regs {
		k.stop()
	}
	for w := range ws {
		_ = w.Stop()
	}
	return nil
}

// put sends one registration, bounded by the request timeout.
func (r *Registry) put(ctx context.Context, reg *api.AgentServiceRegistration) error {
	ctx, cancel := r.withRequestTimeout(ctx)
	defer cancel()
	// ReplaceExistingChecks makes a re-registration converge on exactly our
	// one check, whatever an earlier version of the service registered.
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	return r.client.Agent().ServiceRegisterOpts(reg, opts)
}

// keep retries the registration until it succeeds, then checks about once
// per health interval that the agent still has it and registers it again if
// not. It logs failures as outage decides, not on every retry, and once
// when Consul is back.
//
// firstErr is the error of Register's own attempt (nil if it succeeded),
// logged here with the later ones, so that one outage decides what is
// logged.
func (r *Registry) keep(ctx context.Context, k *keeper, reg *api.AgentServiceRegistration, name string, firstErr error) {
	registered := k.registered
	period := max(r.opts.checkInterval, time.Second)
	bo := newBackoff(r.opts.backoffInitial, r.opts.backoffMax)
	put := outage{hint: needWrite(reg.Name)}     // failures to register
	present := outage{hint: needWrite(reg.Name)} // failures to ask whether it still is
	if firstErr != nil {
		r.logPutFailure(&put, name, firstErr)
	}
	for {
		if !registered {
			err := firstErr
			if firstErr == nil {
				err = r.put(ctx, reg)
			}
			firstErr = nil
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				r.logPutFailure(&put, name, err)
				if rpc.Sleep(ctx, bo.next()) != nil {
					return
				}
				continue
			}
			if d := put.end(); d == 0 {
				r.log.Infof("consul: registered %s again", name)
			} else {
				r.log.Infof("consul: registered %s after %s of retries", name, d.Round(time.Millisecond))
			}
			registered = true
			present.end()
			k.registered = true
			bo.reset()
		}

		wait := period
		if present.down() {
			// The agent is unreachable: look again sooner than the period,
			// so a restarted agent gets the instance back quickly.
			wait = min(bo.next(), period)
		}
		if rpc.Sleep(ctx, wait) != nil {
			return
		}
		err := r.present(ctx, reg.ID)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			if d := present.end(); d > 0 {
				r.log.Infof("consul: agent reachable again after %s; %s still registered", d.Round(time.Millisecond), name)
				bo.reset()
			}
		case isNotFound(err):
			r.log.Warnf("consul: %s is missing from the agent (agent restarted?); registering again", name)
			registered = false
			present.end()
			bo.reset()
		default:
			// Unknown state: re-registering now could flip a critical check
			// back to passing, so wait until the agent says it lost it.
			if refused, log, ferr := present.fail(err); log {
				logf := r.log.Warnf
				if refused {
					logf = r.log.Errorf // the token lost its permission since
				}
				logf("consul: check registration of %s: %v; will register again if the agent lost it", name, ferr)
			}
		}
	}
}

// present asks the local agent whether it still has service id.
func (r *Registry) present(ctx context.Context, id string) error {
	ctx, cancel := r.withRequestTimeout(ctx)
	defer cancel()
	_, _, err := r.client.Agent().Service(id, (&api.QueryOptions{}).WithContext(ctx))
	return err
}

// withRequestTimeout bounds ctx by the request timeout: the api client has
// no timeout of its own, and a hung agent must not hang a caller forever.
func (r *Registry) withRequestTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.opts.requestTimeout)
}

// registration turns a Kratos instance into a Consul service registration.
func (r *Registry) registration(ins *registry.ServiceInstance) (*api.AgentServiceRegistration, error) {
	if ins == nil || ins.ID == "" || ins.Name == "" {
		return nil, errors.New("instance needs an ID and a name")
	}
	meta := make(map[string]string, len(ins.Metadata)+len(ins.Endpoints)+1)
	for k, v := range ins.Metadata {
		if k == metaVersion || strings.HasPrefix(k, metaEndpointPrefix) {
			return nil, fmt.Errorf("metadata key %q is reserved", k)
		}
		meta[k] = v
	}
	meta[metaVersion] = ins.Version

	var grpcHost string
	var grpcPort int
	var secure bool
	for i, ep := range ins.Endpoints {
		meta[metaEndpointPrefix+strconv.Itoa(i)] = ep
		u, err := url.Parse(ep)
		if err != nil {
			return nil, fmt.Errorf("endpoint %q: %w", ep, err)
		}
		if (u.Scheme != "grpc" && u.Scheme != "grpcs") || grpcHost != "" {
			continue
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			return nil, fmt.Errorf("endpoint %q: %w", ep, err)
		}
		if grpcPort, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("endpoint %q: bad port: %w", ep, err)
		}
		grpcHost = host
		// Kratos 2.9 writes a TLS port grpcs://; older versions wrote
		// grpc://…?isSecure=true.
		secure, _ = strconv.ParseBool(u.Query().Get("isSecure"))
		secure = secure || u.Scheme == "grpcs"
	}
	if grpcHost == "" {
		return nil, errors.New("no grpc:// or grpcs:// endpoint to register and health-check")
	}

	tags := make([]string, 0, 1+len(r.opts.tags))
	if ins.Version != "" {
		tags = append(tags, metaVersion+"="+ins.Version)
	}
	tags = append(tags, r.opts.tags...)

	check := &api.AgentServiceCheck{
		Name:  "gRPC health",
		Notes: "grpc.health.v1 overall status (empty service name)",
		// Empty service name after host:port: the server's overall health,
		// which the server flips to NOT_SERVING before it drains.
		GRPC:       net.JoinHostPort(grpcHost, strconv.Itoa(grpcPort)),
		GRPCUseTLS: secure,
		Interval:   r.opts.checkInterval.String(),
		Timeout:    r.opts.checkTimeout.String(),
		// Register runs once the server listens, so start passing: the
		// instance is discoverable now instead of after the first interval.
		Status: api.HealthPassing,
	}
	if key := r.opts.httpCheckMeta; key != "" {
		addr := ins.Metadata[key]
		if addr == "" {
			return nil, fmt.Errorf("no metadata %q: the HTTP check needs the address it names", key)
		}
		check = &api.AgentServiceCheck{
			Name:     "HTTP readiness",
			Notes:    "GET " + r.opts.httpCheckPath + " on the side port (the gRPC port takes only mutual TLS)",
			HTTP:     "http://" + addr + r.opts.httpCheckPath,
			Method:   http.MethodGet,
			Interval: r.opts.checkInterval.String(),
			Timeout:  r.opts.checkTimeout.String(),
			Status:   api.HealthPassing,
		}
	}
	if r.opts.deregisterAfter > 0 {
		check.DeregisterCriticalServiceAfter = r.opts.deregisterAfter.String()
	}
	return &api.AgentServiceRegistration{
		ID:      ins.ID,
		Name:    ins.Name,
		Tags:    tags,
		Address: grpcHost,
		Port:    grpcPort,
		Meta:    meta,
		Check:   check,
	}, nil
}

// instance rebuilds the Kratos instance from a health entry. Services not
// registered by this package have no endpoint metadata; they get a grpc://
// endpoint from their address, since discovery here is for gRPC.
func instance(e *api.ServiceEntry) *registry.ServiceInstance {
	svc := e.Service
	ins := &registry.ServiceInstance{
		ID:       svc.ID,
		Name:     svc.Service,
		Version:  svc.Meta[metaVersion],
		Metadata: make(map[string]string, len(svc.Meta)),
	}
	for k, v := range svc.Meta {
		if k != metaVersion && !strings.HasPrefix(k, metaEndpointPrefix) {
			ins.Metadata[k] = v
		}
	}
	for i := 0; ; i++ {
		ep, ok := svc.Meta[metaEndpointPrefix+strconv.Itoa(i)]
		if !ok {
			break
		}
		ins.Endpoints = append(ins.Endpoints, ep)
	}
	if len(ins.Endpoints) == 0 {
		host := svc.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		ins.Endpoints = []string{"grpc://" + net.JoinHostPort(host, strconv.Itoa(svc.Port)) + "?isSecure=false"}
	}
	return ins
}

// instances converts entries and sorts them by ID, so that sets compare
// and print stably.
func instances(entries []*api.ServiceEntry) []*registry.ServiceInstance {
	out := make([]*registry.ServiceInstance, 0, len(entries))
	for _, e := range entries {
		if e.Service != nil {
			out = append(out, instance(e))
		}
	}
	slices.SortFunc(out, func(a, b *registry.ServiceInstance) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// sameInstances reports whether two ID-sorted sets are equal in everything
// a client acts on: ID, name, version, endpoints (in order) and metadata.
func sameInstances(a, b []*registry.ServiceInstance) bool {
	return slices.EqualFunc(a, b, func(x, y *registry.ServiceInstance) bool {
		return x.ID == y.ID && x.Name == y.Name && x.Version == y.Version &&
			slices.Equal(x.Endpoints, y.Endpoints) && maps.Equal(x.Metadata, y.Metadata)
	})
}

// cloneInstances deep-copies a set, so callers may modify what they get
// (Kratos' ServiceInstance.Equal sorts Endpoints in place) without
// disturbing the watcher's comparison.
func cloneInstances(in []*registry.ServiceInstance) []*registry.ServiceInstance {
	out := make([]*registry.ServiceInstance, len(in))
	for i, s := range in {
		c := *s
		c.Endpoints = slices.Clone(s.Endpoints)
		c.Metadata = maps.Clone(s.Metadata)
		out[i] = &c
	}
	return out
}

// label names an instance in logs and errors: the ID, prefixed with the
// service name unless the ID already carries it.
func label(ins *registry.ServiceInstance) string {
	if ins == nil {
		return "<nil>"
	}
	if ins.Name == "" || strings.HasPrefix(ins.ID, ins.Name) {
		return ins.ID
	}
	return ins.Name + "-" + ins.ID
}

// isNotFound reports a 404 from the agent: unknown service ID.
func isNotFound(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// isRejected reports an error that only a change of the instance can fix:
// Consul answered and rejected the registration itself (a bad
// definition). An ACL refusal (403) is not one: an operator fixes the
// policy while the instance runs. Throttling and timeouts are transient.
func isRejected(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code >= 400 && se.Code < 500 &&
		se.Code != http.StatusForbidden && se.Code != http.StatusTooManyRequests && se.Code != http.StatusRequestTimeout
}
