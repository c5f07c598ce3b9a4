// Package conf is the typed configuration of a Rampart service: loaded from
// one YAML file, overridden by environment variables for addresses and
// secrets, and validated before anything starts, so a bad value stops the
// process with the key named instead of failing later on first use.
package conf

import (
	"errors"
	"fmt"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// Bootstrap is the whole configuration of one service process.
type Bootstrap struct {
	Service  Service           `yaml:"service"`
	Server   Server            `yaml:"server"`
	Registry Registry          `yaml:"registry"`
	Clients  map[string]Client `yaml:"clients"`
	Data     Data              `yaml:"data"`
	Log      Log               `yaml:"log"`
}

// Service names this service in Consul and in logs.
type Service struct {
	Name    string `yaml:"name"`
	Version string `yaml:"version"`
}

// Server holds the listening side: the gRPC port that serves the API and the
// HTTP side port that serves health probes.
type Server struct {
	GRPC GRPC `yaml:"grpc"`
	HTTP HTTP `yaml:"http"`
	// DrainDelay is how long a stopping instance keeps serving after it left
	// Consul, so that watchers have seen it go before connections close.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// StopTimeout bounds GracefulStop; in-flight calls still running then are cut.
	StopTimeout time.Duration `yaml:"stop_timeout"`
}

// GRPC is the API listener. Port 0 picks a free port; the registrar
// advertises the port actually bound.
type GRPC struct {
	Addr string `yaml:"addr"`
	// Timeout caps how long the server lets one call run.
	Timeout time.Duration `yaml:"timeout"`
}

// HTTP is the side port for /healthz and /readyz.
type HTTP struct {
	Addr string `yaml:"addr"`
}

// Registry configures service registration and discovery.
type Registry struct {
	Consul Consul `yaml:"consul"`
}

// Consul says how to reach the agent and how it checks this instance.
// Address, token, datacenter and TLS files are overridden by the standard
// CONSUL_HTTP_* variables when those are set.
type Consul struct {
	Address    string    `yaml:"address"`
	Scheme     string    `yaml:"scheme"`
	Datacenter string    `yaml:"datacenter"`
	Token      string    `yaml:"token"`
	TLS        ConsulTLS `yaml:"tls"`
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

// Client configures the connection to another service.
type Client struct {
	// Target is a Kratos discovery URL such as discovery:///user.
	Target string `yaml:"target"`
	// Timeout bounds one logical call, retries included.
	Timeout time.Duration `yaml:"timeout"`
}

// Data configures the storage side.
type Data struct {
	// Driver is memory (maps in this process: fine for one instance and for
	// tests) or sqlite (one file that every instance of the service on this
	// host shares, so a call or a retry may land on any instance).
	Driver      string      `yaml:"driver"`
	SQLite      SQLite      `yaml:"sqlite"`
	Idempotency Idempotency `yaml:"idempotency"`
}

// SQLite locates the shared database file.
type SQLite struct {
	Path string `yaml:"path"`
}

// Idempotency bounds how many idempotency keys are remembered and for how
// long; a retry that arrives after its key was forgotten creates a new order.
type Idempotency struct {
	TTL      time.Duration `yaml:"ttl"`
	Capacity int           `yaml:"capacity"`
}

// Storage drivers for data.driver.
const (
	DriverMemory = "memory"
	DriverSQLite = "sqlite"
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
		if err := doc.Decode(c); err != nil {
			return nil, fmt.Errorf("parse config: %w", err)
		}
	}
	c.applyEnv(lookup)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Default is the configuration a key falls back to when the file omits it.
func Default() *Bootstrap {
	return &Bootstrap{
		Service: Service{Version: "dev"},
		Server: Server{
			GRPC:        GRPC{Addr: "127.0.0.1:0", Timeout: 5 * time.Second},
			HTTP:        HTTP{Addr: "127.0.0.1:0"},
			DrainDelay:  time.Second,
			StopTimeout: 10 * time.Second,
		},
		Registry: Registry{Consul: Consul{
			Address:         "127.0.0.1:8500",
			Scheme:          "http",
			HealthInterval:  time.Second,
			HealthTimeout:   time.Second,
			DeregisterAfter: 30 * time.Second,
		}},
		Data: Data{
			Driver:      DriverMemory,
			Idempotency: Idempotency{TTL: 24 * time.Hour, Capacity: 100000},
		},
		Log: Log{Level: "info", Format: "text"},
	}
}

// Masked returns a copy safe to log: secrets are replaced by a marker that
// still shows whether one is set.
func (c *Bootstrap) Masked() Bootstrap {
	m := *c
	if m.Registry.Consul.Token != "" {
		m.Registry.Consul.Token = "***"
	}
	return m
}
