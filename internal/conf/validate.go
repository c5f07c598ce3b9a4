package conf

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/rampart-go/rampart/internal/middleware/faults"
)

// KeyError names the config key that holds a bad value.
type KeyError struct {
	Key    string
	Reason string
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Reason }

var (
	serviceName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	fullMethod  = regexp.MustCompile(`^/[A-Za-z_][\w.]*/[A-Za-z_]\w*$`)
)

// maxAttempts is the most attempts a policy may ask for: beyond it a retry
// policy stops protecting the caller and starts hurting the dependency.
const maxAttempts = 5

// finite reports v, under key, if it is NaN or infinite, which YAML can
// spell (.nan, .inf) and which the range checks after it would let
// through: every comparison with NaN is false, and +Inf passes a lower
// bound. It returns whether v is finite, so a range check runs only then.
func finite(key string, v float64, bad func(key, format string, args ...any)) bool {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		bad(key, "must be a finite number, got %v", v)
		return false
	}
	return true
}

func validatePolicy(key string, p Policy, bad func(key, format string, args ...any)) {
	if p.Timeout <= 0 {
		bad(key+".timeout", "must be > 0")
	}
	if p.AttemptTimeout <= 0 {
		bad(key+".attempt_timeout", "must be > 0")
	} else if p.AttemptTimeout > p.Timeout && p.Timeout > 0 {
		bad(key+".attempt_timeout", "must not exceed timeout (%s)", p.Timeout)
	}
	r := p.Retry
	if r.MaxAttempts < 1 || r.MaxAttempts > maxAttempts {
		bad(key+".retry.max_attempts", "must be between 1 and %d, got %d", maxAttempts, r.MaxAttempts)
	}
	if r.InitialBackoff <= 0 {
		bad(key+".retry.initial_backoff", "must be > 0")
	}
	if r.MaxBackoff < r.InitialBackoff {
		bad(key+".retry.max_backoff", "must be >= initial_backoff (%s)", r.InitialBackoff)
	}
	if finite(key+".retry.multiplier", r.Multiplier, bad) && r.Multiplier < 1 {
		bad(key+".retry.multiplier", "must be >= 1, got %v", r.Multiplier)
	}
	b := p.Breaker
	if finite(key+".breaker.success", b.Success, bad) && (b.Success <= 0 || b.Success > 1) {
		bad(key+".breaker.success", "must be in (0, 1], got %v", b.Success)
	}
	if b.Request <= 0 {
		bad(key+".breaker.request", "must be > 0")
	}
	if b.Window <= 0 {
		bad(key+".breaker.window", "must be > 0")
	}
	if b.Bucket <= 0 {
		bad(key+".breaker.bucket", "must be > 0")
	}
}

func validateFaults(f Faults, bad func(key, format string, args ...any)) {
	methods := make([]string, 0, len(f.Methods))
	for m := range f.Methods {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	for _, m := range methods {
		key := "server.faults.methods." + m
		if m != faults.AllMethods && !fullMethod.MatchString(m) {
			bad(key, "must be * or a full method name like /user.v1.UserService/GetUser")
		}
		// The fault names its own field ("delay.percent: …"); put it under the key.
		if err := f.Methods[m].Validate(); err != nil {
			field, reason, _ := strings.Cut(err.Error(), ": ")
			bad(key+"."+field, "%s", reason)
		}
	}
}

// Validate reports every bad value at once, each with its key, so one start
// attempt shows everything to fix.
func (c *Bootstrap) Validate() error { return c.validate(nil) }

// validate is Validate reporting earlier errors (bad environment values)
// first, in the same list.
func (c *Bootstrap) validate(earlier []error) error {
	errs := earlier
	bad := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be > 0")
		}
	}
	hostPort := func(key, v string) {
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(key, "must be host:port, got %q", v)
		}
	}

	if !serviceName.MatchString(c.Service.Name) {
		bad("service.name", "must be lower-case letters, digits and '-', starting with a letter, got %q", c.Service.Name)
	}
	if c.Service.Version == "" {
		bad("service.version", "must not be empty")
	}
	hostPort("server.grpc.addr", c.Server.GRPC.Addr)
	hostPort("server.http.addr", c.Server.HTTP.Addr)
	positive("server.grpc.timeout", c.Server.GRPC.Timeout)
	if c.Server.DrainDelay < 0 {
		bad("server.drain_delay", "must be >= 0")
	}
	positive("server.stop_timeout", c.Server.StopTimeout)

	cc := c.Registry.Consul
	hostPort("registry.consul.address", cc.Address)
	if cc.Scheme != "http" && cc.Scheme != "https" {
		bad("registry.consul.scheme", "must be http or https, got %q", cc.Scheme)
	}
	positive("registry.consul.health_interval", cc.HealthInterval)
	positive("registry.consul.health_timeout", cc.HealthTimeout)
	if cc.HealthTimeout > cc.HealthInterval && cc.HealthInterval > 0 {
		bad("registry.consul.health_timeout", "must not exceed health_interval (%s)", cc.HealthInterval)
	}
	// Consul raises any value below its check_deregister_interval_min (1m by
	// default) to that minimum and logs a warning; a positive value is all we
	// can check here.
	positive("registry.consul.deregister_after", cc.DeregisterAfter)

	names := make([]string, 0, len(c.Clients))
	for name := range c.Clients {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cl := c.Clients[name]
		key := "clients." + name
		if u, err := url.Parse(cl.Target); err != nil || u.Scheme != "discovery" || strings.Trim(u.Path, "/") == "" {
			bad(key+".target", "must look like discovery:///<service>, got %q", cl.Target)
		}
		positive(key+".keepalive.time", cl.Keepalive.Time)
		positive(key+".keepalive.timeout", cl.Keepalive.Timeout)
		if cl.IdleTimeout < 0 {
			bad(key+".idle_timeout", "must be >= 0 (0: never idle), got %v", cl.IdleTimeout)
		}
		if finite(key+".budget.ratio", cl.Budget.Ratio, bad) && (cl.Budget.Ratio < 0 || cl.Budget.Ratio > 1) {
			bad(key+".budget.ratio", "must be between 0 and 1, got %v", cl.Budget.Ratio)
		}
		if cl.Budget.MinPerSecond < 0 {
			bad(key+".budget.min_per_second", "must be >= 0")
		}
		if err := cl.Outlier.Validate(); err != nil {
			field, reason, _ := strings.Cut(err.Error(), ": ")
			bad(key+".outlier."+field, "%s", reason)
		}
		validatePolicy(key, cl.Policy, bad)
		methods := make([]string, 0, len(cl.Methods))
		for m := range cl.Methods {
			methods = append(methods, m)
		}
		sort.Strings(methods)
		for _, m := range methods {
			if !fullMethod.MatchString(m) {
				bad(key+".methods."+m, "must be a full method name like /user.v1.UserService/GetUser")
			}
			validatePolicy(key+".methods."+m, cl.Methods[m], bad)
		}
	}
	validateFaults(c.Server.Faults, bad)
	if sh := c.Server.Shedding; sh.Enabled {
		if sh.CPUThreshold <= 0 || sh.CPUThreshold > 1000 {
			bad("server.shedding.cpu_threshold", "must be in (0, 1000] per mille, got %d", sh.CPUThreshold)
		}
		positive("server.shedding.window", sh.Window)
		if sh.Bucket <= 0 {
			bad("server.shedding.bucket", "must be > 0")
		}
		if sh.Pushback < 0 {
			bad("server.shedding.pushback", "must be >= 0")
		}
	}
	positive("server.grpc.keepalive_min_time", c.Server.GRPC.KeepaliveMinTime)
	if c.Server.GRPC.MaxConcurrentStreams == 0 {
		bad("server.grpc.max_concurrent_streams", "must be > 0")
	}

	switch c.Data.Driver {
	case DriverMemory:
	case DriverSQLite:
		if c.Data.SQLite.Path == "" {
			bad("data.sqlite.path", "must be set when data.driver is sqlite")
		}
	default:
		bad("data.driver", "must be memory or sqlite, got %q", c.Data.Driver)
	}
	positive("data.idempotency.ttl", c.Data.Idempotency.TTL)
	if c.Data.Idempotency.Capacity <= 0 {
		bad("data.idempotency.capacity", "must be > 0")
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	// Telemetry names its own key (telemetry.sampler) or the OTEL_*
	// variable that overrode it.
	if _, err := c.Telemetry.Resolve(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid config: %w", errors.Join(errs...))
}
