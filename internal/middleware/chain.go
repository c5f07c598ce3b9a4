// Package middleware assembles the chains every Rampart service runs, in the
// order the design fixes, from configuration, so no service builds its own.
// The policies themselves live one per sub-package.
//
// Client chain, outermost first: access log -> logical span -> timeout (whole call) -> retry or,
// for a method that has it, hedging (both with the budget) -> breaker -> outlier ejection (records each attempt against its
// instance) -> timeout (one attempt) -> the balancer's pick, which the
// ejection filter and retry's avoid-tried filter narrow.
// Server chain, outermost first: access log -> recovery -> authorization
// (mtls mode only) -> load shedding -> retry marker (chain stop) ->
// validation -> fault injection -> handler, with the server's timeout cap
// (server.grpc.timeout) applied by server.GRPCServer before all.
package middleware

import (
	"fmt"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	kmiddleware "github.com/go-kratos/kratos/v2/middleware"
	"github.com/go-kratos/kratos/v2/selector"
	"github.com/google/wire"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"

	"github.com/rampart-go/rampart/internal/middleware/accesslog"
	"github.com/rampart-go/rampart/internal/middleware/authz"
	"github.com/rampart-go/rampart/internal/middleware/breaker"
	"github.com/rampart-go/rampart/internal/middleware/faults"
	"github.com/rampart-go/rampart/internal/middleware/outlier"
	"github.com/rampart-go/rampart/internal/middleware/recovery"
	"github.com/rampart-go/rampart/internal/middleware/retry"
	"github.com/rampart-go/rampart/internal/middleware/shedding"
	"github.com/rampart-go/rampart/internal/middleware/timeout"
	"github.com/rampart-go/rampart/internal/middleware/validation"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// ProviderSet builds the fault injector and both chains.
var ProviderSet = wire.NewSet(NewFaults, NewServerChain, NewClients)

// ServerChain is the middleware every API handler runs behind, outermost first.
type ServerChain []kmiddleware.Middleware

// Authorization is the server chain's authorization step: Service is the
// server's own Consul service name, Authorizer decides who may call it. The
// zero value (plaintext mode) leaves the step out.
type Authorization struct {
	Service    string
	Authorizer authz.Authorizer
}

// NewServerChain returns the server chain. The access log is outermost so
// every call gets its line, one that panicked or was refused included:
// recovery, right inside it, turns a panic anywhere below into Internal
// instead of a crash. Authorization comes next, before shedding, so a
// caller that may not call costs no capacity. Shedding comes before any
// work is spent on a call it will refuse; validation before fault
// injection, so a bad request is refused the same way under faults.
// Shedding records its counter through mp.
func NewServerChain(sh shedding.Config, logger log.Logger, inj *faults.Injector, mp metric.MeterProvider, az Authorization) (ServerChain, error) {
	validate, err := validation.Server(logger)
	if err != nil {
		return nil, err
	}
	chain := ServerChain{accesslog.Server(logger), recovery.Server(logger)}
	if az.Authorizer != nil {
		chain = append(chain, authz.Server(az.Service, az.Authorizer, logger))
	}
	if sh.Enabled {
		chain = append(chain, shedding.Server(sh, shedding.WithMeterProvider(mp)))
	}
	return append(chain, retry.Server(), validate, inj.Middleware()), nil
}

// NewFaults returns the fault injector with server.faults.methods, counting
// through mp; it is built even when empty so /debug/faults can switch
// faults on at run time.
func NewFaults(c faults.Config, mp metric.MeterProvider) (*faults.Injector, error) {
	inj, err := faults.New(c.Methods, faults.WithMeterProvider(mp))
	if err != nil {
		return nil, fmt.Errorf("server.faults: %w", err)
	}
	return inj, nil
}

// Client is the chain for one client target.
type Client struct {
	// Target is the discovery URL the chain is for (clients.<name>.target).
	Target string
	// Middleware are Kratos middleware; Kratos runs them around the whole
	// call, outside every interceptor, and builds their chain on every
	// call. Rampart's chain has none: its access log is the outermost
	// interceptor instead.
	Middleware []kmiddleware.Middleware
	// Interceptors are the resilience chain, outermost first.
	Interceptors []grpc.UnaryClientInterceptor
	// Dial are the connection options (keepalive, idle timeout).
	Dial []grpc.DialOption
	// NodeFilters narrow the balancer's choice per attempt: a retry avoids
	// the instances its call already failed on, a hedge every instance its
	// call has sent an attempt to (retry.AvoidTried, which must stay last).
	NodeFilters []selector.NodeFilter
}

// Clients builds the chain of each configured client target.
type Clients struct {
	configs ClientConfigs
	logger  log.Logger
	tel     *telemetry.Telemetry
}

// NewClients returns the chain factory over clients.* in the config. With
// telemetry, each call gets a logical span that parents one span per
// attempt, and the policies count through its meter provider; nil leaves
// calls untraced and counts through the OpenTelemetry global (tools and
// tests).
func NewClients(configs ClientConfigs, logger log.Logger, tel *telemetry.Telemetry) *Clients {
	return &Clients{configs: configs, logger: logger, tel: tel}
}

// policies is one client's policy per method, compiled once when its chain
// is built: a call looks its method up in a map of ready values and falls
// back to the client's own, with no conversion on the hot path.
type policies struct {
	client  *MethodPolicy
	methods map[string]*MethodPolicy
	// hedged says some method is hedged; without one the retry
	// interceptor is built without hedging.
	hedged bool
}

func compilePolicies(c ClientConfig) *policies {
	p := &policies{client: &MethodPolicy{Policy: c.Policy}}
	if len(c.Methods) > 0 {
		p.methods = make(map[string]*MethodPolicy, len(c.Methods))
		for m, mp := range c.Methods {
			p.methods[m] = &mp
			p.hedged = p.hedged || mp.Hedging.Enabled()
		}
	}
	return p
}

// of returns the policy of a full method name.
func (p *policies) of(method string) *MethodPolicy {
	if mp, ok := p.methods[method]; ok {
		return mp
	}
	return p.client
}

// For returns the chain for clients.<name>. Each target gets its own retry
// budget and breakers, so one failing dependency cannot spend another's.
func (cs *Clients) For(name string) (Client, error) {
	cl, ok := cs.configs[name]
	if !ok {
		return Client{}, fmt.Errorf("config has no clients.%s", name)
	}
	pol := compilePolicies(cl)
	var mp metric.MeterProvider
	if cs.tel != nil {
		mp = cs.tel.MeterProvider()
	}
	var (
		retryOpts   []retry.Option
		breakerOpts []breaker.Option
		outlierOpts = []outlier.Option{outlier.WithLogger(cs.logger)}
	)
	if pol.hedged {
		retryOpts = append(retryOpts, retry.WithHedging(func(m string) retry.HedgingConfig { return pol.of(m).Hedging }))
	}
	if mp != nil {
		retryOpts = append(retryOpts, retry.WithMeterProvider(mp))
		breakerOpts = append(breakerOpts, breaker.WithMeterProvider(mp))
		outlierOpts = append(outlierOpts, outlier.WithMeterProvider(mp))
	}
	ejection := outlier.New(name, cl.Outlier, outlierOpts...)
	chain := Client{
		Target: cl.Target,
		Interceptors: []grpc.UnaryClientInterceptor{
			timeout.Client(func(m string) time.Duration { return pol.of(m).Timeout }),
			retry.Client(name, func(m string) retry.Config { return pol.of(m).Retry }, retry.NewBudget(cl.Budget), retryOpts...),
			breaker.Client(name, func(m string) breaker.Config { return pol.of(m).Breaker }, breakerOpts...),
			ejection.Interceptor(),
			timeout.Client(func(m string) time.Duration { return pol.of(m).AttemptTimeout }),
		},
		Dial:        []grpc.DialOption{grpc.WithKeepaliveParams(cl.Keepalive.Params()), grpc.WithIdleTimeout(cl.IdleTimeout)},
		NodeFilters: []selector.NodeFilter{ejection.Filter(), retry.AvoidTried()},
	}
	if cs.tel != nil {
		// The logical span outermost, so retry events and breaker
		// rejections land on it; the attempt span innermost, one per attempt.
		chain.Interceptors = append([]grpc.UnaryClientInterceptor{cs.tel.LogicalSpan(name)}, chain.Interceptors...)
		chain.Interceptors = append(chain.Interceptors, cs.tel.AttemptSpan(name))
		chain.Dial = append(chain.Dial, cs.tel.ClientStreamInterceptor(name))
	}
	// The access log outside all, where the Kratos middleware was: one line
	// per logical call, with the call's final code and whole latency.
	chain.Interceptors = append([]grpc.UnaryClientInterceptor{accesslog.ClientInterceptor(cs.logger)}, chain.Interceptors...)
	return chain, nil
}
