package conf

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// KeyError names the config key that holds a bad value.
type KeyError struct {
	Key    string
	Reason string
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Reason }

var serviceName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// checker collects every bad value with its key, so one start attempt
// shows everything to fix.
type checker struct{ errs []error }

func (k *checker) bad(key, format string, args ...any) {
	k.errs = append(k.errs, &KeyError{Key: key, Reason: fmt.Sprintf(format, args...)})
}

func (k *checker) positive(key string, d time.Duration) {
	if d <= 0 {
		k.bad(key, "must be > 0")
	}
}

func (k *checker) hostPort(key, v string) {
	if _, _, err := net.SplitHostPort(v); err != nil {
		k.bad(key, "must be host:port, got %q", v)
	}
}

// under reports each error of a policy's Validate, a single one or an
// errors.Join of "field: reason", under key: the policy names its own field
// and conf puts it where it sits in the file.
func (k *checker) under(key string, err error) {
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		field, reason, _ := strings.Cut(e.Error(), ": ")
		k.bad(key+"."+field, "%s", reason)
	}
}

// Validate reports every bad value at once, each with its key, so one start
// attempt shows everything to fix.
func (c *Bootstrap) Validate() error { return c.validate(nil) }

// validate is Validate reporting earlier errors (bad environment values)
// first, in the same list.
func (c *Bootstrap) validate(earlier []error) error {
	k := &checker{errs: earlier}
	if !serviceName.MatchString(c.Service.Name) {
		k.bad("service.name", "must be lower-case letters, digits and '-', starting with a letter, got %q", c.Service.Name)
	}
	if c.Service.Version == "" {
		k.bad("service.version", "must not be empty")
	}
	c.Server.check(k)
	c.Registry.Consul.check(k)
	names := make([]string, 0, len(c.Clients))
	for name := range c.Clients {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		k.under("clients."+name, c.Clients[name].Validate())
	}
	k.under("server.gateway", c.Server.Gateway.Validate())
	k.under("server.faults", c.Server.Faults.Validate())
	k.under("server.shedding", c.Server.Shedding.Validate())
	c.Data.check(k)
	c.Log.check(k)
	c.Security.check(k)
	// Telemetry names its own key (telemetry.sampler) or the OTEL_*
	// variable that overrode it.
	if _, err := c.Telemetry.Resolve(c.Env); err != nil {
		k.errs = append(k.errs, err)
	}
	if len(k.errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid config: %w", errors.Join(k.errs...))
}

func (s Server) check(k *checker) {
	k.hostPort("server.grpc.addr", s.GRPC.Addr)
	k.hostPort("server.http.addr", s.HTTP.Addr)
	if a := s.GRPC.Advertise; a != "" {
		host, port, err := net.SplitHostPort(a)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n <= 0 || n > 65535 {
			k.bad("server.grpc.advertise", "must be host:port with a host and a port from 1 to 65535 (what peers dial), got %q", a)
		} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			k.bad("server.grpc.advertise", "must be an address peers can dial, not the wildcard %s", host)
		}
	}
	k.positive("server.grpc.timeout", s.GRPC.Timeout)
	if s.DrainDelay < 0 {
		k.bad("server.drain_delay", "must be >= 0")
	}
	k.positive("server.stop_timeout", s.StopTimeout)
	k.positive("server.grpc.keepalive_min_time", s.GRPC.KeepaliveMinTime)
	if s.GRPC.MaxConcurrentStreams == 0 {
		k.bad("server.grpc.max_concurrent_streams", "must be > 0")
	}
}

func (cc Consul) check(k *checker) {
	k.hostPort("registry.consul.address", cc.Address)
	if cc.Scheme != "http" && cc.Scheme != "https" {
		k.bad("registry.consul.scheme", "must be http or https, got %q", cc.Scheme)
	}
	k.positive("registry.consul.health_interval", cc.HealthInterval)
	k.positive("registry.consul.health_timeout", cc.HealthTimeout)
	if cc.HealthTimeout > cc.HealthInterval && cc.HealthInterval > 0 {
		k.bad("registry.consul.health_timeout", "must not exceed health_interval (%s)", cc.HealthInterval)
	}
	// Consul raises any value below its check_deregister_interval_min (1m by
	// default) to that minimum and logs a warning; a positive value is all we
	// can check here.
	k.positive("registry.consul.deregister_after", cc.DeregisterAfter)
}

func (d Data) check(k *checker) {
	switch d.Driver {
	case DriverMemory:
	case DriverSQLite:
		if d.SQLite.Path == "" {
			k.bad("data.sqlite.path", "must be set when data.driver is sqlite")
		}
	case DriverPostgres:
		d.Postgres.check(k)
	default:
		k.bad("data.driver", "must be memory, sqlite or postgres, got %q", d.Driver)
	}
	k.positive("data.idempotency.ttl", d.Idempotency.TTL)
	if d.Idempotency.Capacity <= 0 {
		k.bad("data.idempotency.capacity", "must be > 0")
	}
}

// check parses the URL as the driver will (an empty one stands for the
// libpq PG* variables), so a bad one stops the process here with its key.
// The parser's message never includes the password.
func (p Postgres) check(k *checker) {
	if _, err := pgx.ParseConfig(p.URL); err != nil {
		k.bad("data.postgres.url", "%v", err)
	}
	if p.MaxConns <= 0 {
		k.bad("data.postgres.max_conns", "must be > 0")
	}
	k.positive("data.postgres.connect_timeout", p.ConnectTimeout)
	k.positive("data.postgres.statement_timeout", p.StatementTimeout)
}

func (l Log) check(k *checker) {
	switch l.Format {
	case "text", "json":
	default:
		k.bad("log.format", "must be text or json, got %q", l.Format)
	}
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		k.bad("log.level", "must be debug, info, warn or error, got %q", l.Level)
	}
}

func (s Security) check(k *checker) {
	switch s.Mode {
	case SecurityPlaintext, SecurityMTLS:
	default:
		k.bad("security.mode", "must be %s or %s, got %q", SecurityPlaintext, SecurityMTLS, s.Mode)
	}
	k.positive("security.authz_cache_ttl", s.AuthzCacheTTL)
}
