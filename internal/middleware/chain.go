// Package middleware assembles the chains every Rampart service runs, in the
// order the design fixes, from configuration, so no service builds its own.
// The policies themselves live one per sub-package.
//
// Client chain, outermost first: logical span -> timeout (whole call) -> retry (with its
// budget) -> breaker -> outlier ejection (records each attempt against its
// instance) -> timeout (one attempt) -> the balancer's pick, which the
// ejection filter and retry's avoid-tried filter narrow.
// Server chain, outermost first: access log -> recovery -> load shedding ->
// retry marker (chain stop) -> validation -> fault injection -> handler,
// with the server's timeout cap applied by the Kratos server before all.
package middleware

import (
	"fmt"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	kmiddleware "github.com/go-kratos/kratos/v2/middleware"
	"github.com/go-kratos/kratos/v2/selector"
	"github.com/google/wire"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/middleware/accesslog"
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

// NewServerChain returns the server chain. The access log is outermost so
// every call gets its line, one that panicked included: recovery, right
// inside it, turns a panic anywhere below into Internal instead of a crash.
// Shedding comes before any work is spent on a call it will refuse;
// validation before fault injection, so a bad request is refused the same
// way under faults.
//
// It takes the telemetry so that wire builds the OpenTelemetry providers
// first: shedding and faults create their counters on the global provider.
func NewServerChain(c *conf.Bootstrap, logger log.Logger, inj *faults.Injector, _ *telemetry.Telemetry) ServerChain {
	chain := ServerChain{accesslog.Server(logger), recovery.Server(logger)}
	if sh := c.Server.Shedding; sh.Enabled {
		chain = append(chain, shedding.Server(
			shedding.WithCPUThreshold(sh.CPUThreshold),
			shedding.WithWindow(sh.Window),
			shedding.WithBucket(sh.Bucket),
			shedding.WithPushback(sh.Pushback),
		))
	}
	return append(chain, retry.Server(), validation.Server(), inj.Middleware())
}

// ServerOptions are the gRPC server options the chain relies on: clients
// ping idle connections (see Client.Dial), and the server must allow it.
func ServerOptions(c *conf.Bootstrap) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(c.Server.GRPC.MaxConcurrentStreams),
		grpc.KeepaliveEnforcementPolicy(serverKeepalive(c.Server.GRPC)),
	}
}

// serverKeepalive lets clients ping, idle connections included, as often as
// server.grpc.keepalive_min_time: a server that refused pings without a
// stream would answer every idle client's ping with GOAWAY too_many_pings.
func serverKeepalive(g conf.GRPC) keepalive.EnforcementPolicy {
	return keepalive.EnforcementPolicy{MinTime: g.KeepaliveMinTime, PermitWithoutStream: true}
}

// clientKeepalive pings idle connections too: the point is to find a peer
// that vanished without closing the connection before the next call pays
// for it, and a connection with a call in flight would notice soon anyway.
func clientKeepalive(k conf.Keepalive) keepalive.ClientParameters {
	return keepalive.ClientParameters{Time: k.Time, Timeout: k.Timeout, PermitWithoutStream: true}
}

// NewFaults returns the fault injector with server.faults.methods; it is
// built even when empty so /debug/faults can switch faults on at run time.
func NewFaults(c *conf.Bootstrap) (*faults.Injector, error) {
	inj, err := faults.New(c.Server.Faults.Methods)
	if err != nil {
		return nil, fmt.Errorf("server.faults: %w", err)
	}
	return inj, nil
}

// Client is the chain for one client target.
type Client struct {
	// Middleware are Kratos middleware; Kratos runs them around the whole
	// call, outside every interceptor.
	Middleware []kmiddleware.Middleware
	// Interceptors are the resilience chain, outermost first.
	Interceptors []grpc.UnaryClientInterceptor
	// Dial are the connection options (keepalive, idle timeout).
	Dial []grpc.DialOption
	// NodeFilters narrow the balancer's choice per attempt: a retry avoids
	// the instances its call already failed on.
	NodeFilters []selector.NodeFilter
}

// Clients builds the chain of each configured client target.
type Clients struct {
	c      *conf.Bootstrap
	logger log.Logger
	tel    *telemetry.Telemetry
}

// NewClients returns the chain factory over clients.* in the config. With
// telemetry, each call gets a logical span that parents one span per
// attempt; nil leaves calls untraced (tools and tests).
func NewClients(c *conf.Bootstrap, logger log.Logger, tel *telemetry.Telemetry) *Clients {
	return &Clients{c: c, logger: logger, tel: tel}
}

// For returns the chain for clients.<name>. Each target gets its own retry
// budget and breakers, so one failing dependency cannot spend another's.
func (cs *Clients) For(name string) (Client, error) {
	cl, ok := cs.c.Clients[name]
	if !ok {
		return Client{}, fmt.Errorf("config has no clients.%s", name)
	}
	total := func(m string) time.Duration { return cl.PolicyFor(m).Timeout }
	attempt := func(m string) time.Duration { return cl.PolicyFor(m).AttemptTimeout }
	retryPolicy := func(m string) retry.Policy {
		r := cl.PolicyFor(m).Retry
		return retry.Policy{MaxAttempts: r.MaxAttempts, InitialBackoff: r.InitialBackoff, MaxBackoff: r.MaxBackoff, Multiplier: r.Multiplier}
	}
	breakerConfig := func(m string) breaker.Config {
		b := cl.PolicyFor(m).Breaker
		return breaker.Config{Success: b.Success, Request: b.Request, Window: b.Window, Bucket: b.Bucket}
	}
	ejection := outlier.New(name, cl.Outlier, outlier.WithLogger(cs.logger))
	chain := Client{
		Middleware: []kmiddleware.Middleware{accesslog.Client(cs.logger)},
		Interceptors: []grpc.UnaryClientInterceptor{
			timeout.Client(total),
			retry.Client(name, retryPolicy, retry.NewBudget(cl.Budget.Ratio, cl.Budget.MinPerSecond)),
			breaker.Client(name, breakerConfig),
			ejection.Interceptor(),
			timeout.Client(attempt),
		},
		Dial:        []grpc.DialOption{grpc.WithKeepaliveParams(clientKeepalive(cl.Keepalive)), grpc.WithIdleTimeout(cl.IdleTimeout)},
		NodeFilters: []selector.NodeFilter{ejection.Filter(), retry.AvoidTried()},
	}
	if cs.tel != nil {
		// Outermost, so retry events and breaker rejections land on the
		// logical span; the stats handler runs per attempt, under it.
		chain.Interceptors = append([]grpc.UnaryClientInterceptor{cs.tel.LogicalSpan(name)}, chain.Interceptors...)
		chain.Dial = append(chain.Dial, cs.tel.ClientStatsHandler(name))
	}
	return chain, nil
}
