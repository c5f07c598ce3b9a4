package conf

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
	"time"
)

// KeyError names the config key that holds a bad value.
type KeyError struct {
	Key    string
	Reason string
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Reason }

var serviceName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// under reports each error of a policy's Validate, a single one or an
// errors.Join of "field: reason", under key: the policy names its own field
// and conf puts it where it sits in the file.
func under(key string, err error, bad func(key, format string, args ...any)) {
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		field, reason, _ := strings.Cut(e.Error(), ": ")
		bad(key+"."+field, "%s", reason)
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
		under("clients."+name, c.Clients[name].Validate(), bad)
	}
	under("server.faults", c.Server.Faults.Validate(), bad)
	under("server.shedding", c.Server.Shedding.Validate(), bad)
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
	if _, err := c.Telemetry.Resolve(c.Env); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid config: %w", errors.Join(errs...))
}
