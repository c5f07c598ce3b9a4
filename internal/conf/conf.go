// Package conf is the typed configuration of a Rampart service: loaded from
// one YAML file, overridden by environment variables for addresses and
// secrets, and validated before anything starts, so a bad value stops the
// process with the key named instead of failing later on first use.
//
// Policy: conf composes; it owns no policy's settings. Each policy package
// (internal/middleware/<policy>, the client chain in internal/middleware,
// internal/telemetry, internal/gateway) declares its Config, DefaultConfig and Validate, and
// conf embeds those types, starts from those defaults and puts those
// errors under their keys. The dependency runs one way: conf imports the
// policies, never the reverse.
package conf

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rampart-go/rampart/internal/gateway"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/middleware/faults"
	"github.com/rampart-go/rampart/internal/middleware/shedding"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// Bootstrap is the whole configuration of one service process.
type Bootstrap struct {
	Service   Service                  `yaml:"service"`
	Server    Server                   `yaml:"server"`
	Registry  Registry                 `yaml:"registry"`
	Clients   middleware.ClientConfigs `yaml:"clients"`
	Data      Data                     `yaml:"data"`
	Log       Log                      `yaml:"log"`
	Telemetry telemetry.Config         `yaml:"telemetry"`
	Security  Security                 `yaml:"security"`
	// Env is the environment the file was parsed with (os.LookupEnv in a
	// service). What reads variables after parsing, telemetry's OTEL_*,
	// reads them through it, so tests and tools can hand a process a
	// different environment without touching the real one.
	Env Lookup `yaml:"-"`
}

// Lookup finds an environment variable, as os.LookupEnv does.
type Lookup func(key string) (string, bool)

// String keeps the effective-configuration log line readable: a function
// would print as its address.
func (Lookup) String() string { return "(environment)" }

// Service names this service in Consul and in logs.
type Service struct {
	Name    string `yaml:"name"`
	Version string `yaml:"version"`
}

// Server holds the listening side: the gRPC port that serves the API, the
// HTTP side port that serves health probes, and the public HTTP/JSON
// gateway to the same API.
type Server struct {
	GRPC GRPC `yaml:"grpc"`
	HTTP HTTP `yaml:"http"`
	// Gateway is the public listener that serves the API as HTTP/JSON by
	// calling the gRPC port; an empty addr turns it off.
	Gateway gateway.Config `yaml:"gateway"`
	// DrainDelay is how long a stopping instance keeps serving after it left
	// Consul, so that watchers have seen it go before connections close.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// StopTimeout bounds GracefulStop; in-flight calls still running then are cut.
	StopTimeout time.Duration   `yaml:"stop_timeout"`
	Shedding    shedding.Config `yaml:"shedding"`
	Faults      faults.Config   `yaml:"faults"`
}

// GRPC is the API listener. Port 0 picks a free port; the registrar
// advertises the port actually bound.
type GRPC struct {
	Addr string `yaml:"addr"`
	// Advertise is the host:port registered in Consul for peers to dial,
	// when that is not the address bound: an instance behind NAT, a port
	// mapping or a proxy. Empty: the bound address (a wildcard bind
	// advertises the first non-loopback address).
	Advertise string `yaml:"advertise"`
	// Timeout caps how long the server lets one call run, whatever deadline
	// the caller sent.
	Timeout time.Duration `yaml:"timeout"`
	// KeepaliveMinTime is the shortest ping interval clients may use;
	// clients that ping faster are disconnected (gRPC enforcement policy).
	KeepaliveMinTime time.Duration `yaml:"keepalive_min_time"`
	// MaxConcurrentStreams caps the calls in flight on one connection, so an
	// overloaded client queues on its side instead of in this process's memory.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
}

// HTTP is the side port: /healthz, /readyz, /metrics, and /debug/faults
// when server.faults.endpoint is on.
type HTTP struct {
	Addr string `yaml:"addr"`
}

// Registry configures service registration and discovery.
type Registry struct {
	// SelfRegister says who puts this instance in Consul. True (the default):
	// the process registers itself once it listens and deregisters when it
	// stops. False: a scheduler owns the registration (a Nomad job's service
	// block), so the process only discovers through Consul; registering here
	// as well would put every instance in the catalog twice.
	SelfRegister bool   `yaml:"self_register"`
	Consul       Consul `yaml:"consul"`
}

// Consul says how to reach the agent and how it checks this instance.
// Address, scheme, token and TLS settings are overridden by the standard
// Consul variables when those are set (CONSUL_HTTP_ADDR, CONSUL_HTTP_SSL,
// CONSUL_HTTP_TOKEN, CONSUL_CACERT, …; see env.go); no variable overrides
// the datacenter.
type Consul struct {
	Address    string `yaml:"address"`
	Scheme     string `yaml:"scheme"`
	Datacenter string `yaml:"datacenter"`
	// Token is the ACL token. TokenFile, when set, names a file holding
	// it instead (read once at start, trimmed), as secrets are mounted.
	Token     string    `yaml:"token"`
	TokenFile string    `yaml:"token_file"`
	TLS       ConsulTLS `yaml:"tls"`
	// HealthInterval and HealthTimeout drive Consul's gRPC health check;
	// together they bound how long a dead or hung instance stays passing.
	HealthInterval time.Duration `yaml:"health_interval"`
	HealthTimeout  time.Duration `yaml:"health_timeout"`
	// DeregisterAfter removes an instance that stayed critical this long, so
	// a crashed process does not linger in the catalog.
	DeregisterAfter time.Duration `yaml:"deregister_after"`
}

// ConsulTLS points at the files for an HTTPS agent.
type ConsulTLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// emptyNullClients makes a client entry without a body ("order:" or
// "order: ~") an empty one ("order: {}"). yaml.v3 does not call
// UnmarshalYAML for null, so the entry would skip the client defaults and
// fail a dozen "must be > 0" checks on keys the file never set. As {} it
// starts from the defaults like any entry and fails once, on the required
// target: one error that says what the entry lacks.
func emptyNullClients(doc *yaml.Node) {
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		clients := root.Content[i+1]
		if root.Content[i].Value != "clients" || clients.Kind != yaml.MappingNode {
			continue
		}
		for j := 1; j < len(clients.Content); j += 2 {
			if entry := clients.Content[j]; entry.ShortTag() == "!!null" {
				entry.Kind, entry.Tag, entry.Value = yaml.MappingNode, "!!map", ""
			}
		}
	}
}

// Security says how the service's gRPC calls are secured.
type Security struct {
	// Mode is SecurityPlaintext or SecurityMTLS.
	Mode string `yaml:"mode"`
	// AuthzCacheTTL is how long, in mtls mode, the answer of the Consul
	// agent to "may caller call this service" is kept per caller: a changed
	// intention applies within it (plus the agent's own few milliseconds).
	AuthzCacheTTL time.Duration `yaml:"authz_cache_ttl"`
}

// Security modes for security.mode.
const (
	// SecurityPlaintext: no TLS and no authorization; any process that
	// reaches the gRPC port may call it. For local experiments.
	SecurityPlaintext = "plaintext"
	// SecurityMTLS: every gRPC connection is mutual TLS with certificates
	// from Consul's CA, and every call is authorized by Consul's
	// intentions from the caller's certificate.
	SecurityMTLS = "mtls"
)

// Data configures the storage side.
type Data struct {
	// Driver is memory (maps in this process: fine for one instance and for
	// tests), sqlite (one file that every instance of the service on this
	// host shares, so a call or a retry may land on any instance) or
	// postgres (one database every instance on every host shares).
	Driver      string      `yaml:"driver"`
	SQLite      SQLite      `yaml:"sqlite"`
	Postgres    Postgres    `yaml:"postgres"`
	Idempotency Idempotency `yaml:"idempotency"`
}

// Postgres says how to reach the database and bounds the pool. URL is
// overridden by DATABASE_URL; when both are empty, the libpq variables
// (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE, …) and
// their defaults apply, as pgx reads them.
type Postgres struct {
	URL string `yaml:"url"`
	// MaxConns caps the pool's connections to the database, per process.
	MaxConns int32 `yaml:"max_conns"`
	// ConnectTimeout bounds dialing and authenticating one connection.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// StatementTimeout is every session's statement_timeout: the server
	// cancels a statement that runs longer.
	StatementTimeout time.Duration `yaml:"statement_timeout"`
}

// SQLite locates the shared database file.
type SQLite struct {
	Path string `yaml:"path"`
}

// Idempotency says for how long idempotency keys are remembered and, for
// the memory store only, how many; a retry that arrives after its key was
// forgotten creates a new order.
type Idempotency struct {
	TTL      time.Duration `yaml:"ttl"`
	Capacity int           `yaml:"capacity"`
}

// Storage drivers for data.driver.
const (
	DriverMemory   = "memory"
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Log configures the process logger.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Load reads path, applies environment overrides and validates the result.
func Load(path string) (*Bootstrap, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(raw, os.LookupEnv)
}

// Parse decodes raw YAML, applies overrides from lookup (os.LookupEnv in
// production) and validates. Unknown keys are errors, so a misspelt key
// cannot be silently ignored.
func Parse(raw []byte, lookup func(string) (string, bool)) (*Bootstrap, error) {
	c := Default()
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	if len(doc.Content) > 0 {
		if errs := unknownKeys(&doc); len(errs) > 0 {
			return nil, fmt.Errorf("invalid config: %w", errors.Join(errs...))
		}
		emptyNullClients(&doc)
		if err := doc.Decode(c); err != nil {
			return nil, fmt.Errorf("parse config: %w", err)
		}
	}
	c.Env = lookup
	if err := c.validate(c.applyEnv(lookup)); err != nil {
		return nil, err
	}
	return c, nil
}

// Default is the configuration a key falls back to when the file omits it;
// the policies' parts are their own DefaultConfig. A clients.<name> entry
// starts from middleware.DefaultClientConfig.
func Default() *Bootstrap {
	return &Bootstrap{
		Service: Service{Version: "dev"},
		Server: Server{
			GRPC: GRPC{
				Addr: "127.0.0.1:0", Timeout: 5 * time.Second, KeepaliveMinTime: 5 * time.Second, MaxConcurrentStreams: 256,
			},
			HTTP:        HTTP{Addr: "127.0.0.1:0"},
			Gateway:     gateway.DefaultConfig(),
			DrainDelay:  time.Second,
			StopTimeout: 10 * time.Second,
			Shedding:    shedding.DefaultConfig(),
			Faults:      faults.DefaultConfig(),
		},
		Registry: Registry{SelfRegister: true, Consul: Consul{
			Address:         "127.0.0.1:8500",
			Scheme:          "http",
			HealthInterval:  time.Second,
			HealthTimeout:   time.Second,
			DeregisterAfter: 30 * time.Second,
		}},
		Data: Data{
			Driver:      DriverMemory,
			Postgres:    Postgres{MaxConns: 10, ConnectTimeout: 5 * time.Second, StatementTimeout: 5 * time.Second},
			Idempotency: Idempotency{TTL: 24 * time.Hour, Capacity: 100000},
		},
		Log:      Log{Level: "info", Format: "text"},
		Security: Security{Mode: SecurityPlaintext, AuthzCacheTTL: time.Second},
		Env:      noEnv,
	}
}

// noEnv is the environment of a configuration that was not parsed: no
// variable is set.
func noEnv(string) (string, bool) { return "", false }

// Masked returns a copy safe to log: secrets are replaced by a marker that
// still shows whether one is set.
func (c *Bootstrap) Masked() Bootstrap {
	m := *c
	if m.Registry.Consul.Token != "" {
		m.Registry.Consul.Token = "***"
	}
	m.Data.Postgres.URL = maskDSN(m.Data.Postgres.URL)
	return m
}

// dsnPassword finds the password of a keyword/value connection string
// (password=secret or password='se cret').
var dsnPassword = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// maskDSN replaces the password of a PostgreSQL URL or keyword/value
// string with ***; what cannot be parsed is masked whole, since it may
// hold one anywhere.
func maskDSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "***"
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "***")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "***")
			u.RawQuery = q.Encode()
		}
		// url escapes the marker (%2A%2A%2A); the log should read ***.
		return strings.ReplaceAll(u.String(), "%2A%2A%2A", "***")
	}
	return dsnPassword.ReplaceAllString(dsn, "${1}***")
}
