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

	"github.com/rampart-go/rampart/internal/middleware/faults"
	"github.com/rampart-go/rampart/internal/middleware/outlier"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// Bootstrap is the whole configuration of one service process.
type Bootstrap struct {
	Service   Service           `yaml:"service"`
	Server    Server            `yaml:"server"`
	Registry  Registry          `yaml:"registry"`
	Clients   map[string]Client `yaml:"clients"`
	Data      Data              `yaml:"data"`
	Log       Log               `yaml:"log"`
	Telemetry telemetry.Config  `yaml:"telemetry"`
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
	Shedding    Shedding      `yaml:"shedding"`
	Faults      Faults        `yaml:"faults"`
}

// Shedding configures adaptive load shedding (aegis BBR): past the CPU
// threshold, calls beyond the measured capacity are refused with
// ResourceExhausted and a pushback hint instead of queueing.
type Shedding struct {
	Enabled bool `yaml:"enabled"`
	// CPUThreshold is in per mille of the machine's CPU (800 = 80%).
	CPUThreshold int64         `yaml:"cpu_threshold"`
	Window       time.Duration `yaml:"window"`
	Bucket       int           `yaml:"bucket"`
	// Pushback is the retry delay the server asks clients to wait.
	Pushback time.Duration `yaml:"pushback"`
}

// Faults configures fault injection, for demos and resilience tests.
type Faults struct {
	// Endpoint serves /debug/faults on the HTTP side port (loopback callers
	// only), to change faults on a running instance.
	Endpoint bool `yaml:"endpoint"`
	// Methods maps a full method ("/user.v1.UserService/GetUser") or "*" to
	// its fault. Empty: no fault, and the injector costs one atomic load.
	Methods map[string]faults.Fault `yaml:"methods"`
}

// GRPC is the API listener. Port 0 picks a free port; the registrar
// advertises the port actually bound.
type GRPC struct {
	Addr string `yaml:"addr"`
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

// Client configures the connection to another service and the policy of
// the calls made through it. Methods override the policy per full method
// name; a key an override leaves out keeps the client's value.
type Client struct {
	// Target is a Kratos discovery URL such as discovery:///user.
	Target    string    `yaml:"target"`
	Keepalive Keepalive `yaml:"keepalive"`
	// IdleTimeout is how long the connection may go without a call before
	// gRPC puts it in idle mode (connections closed, discovery watch
	// stopped); 0 keeps it active for good.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	Budget      Budget        `yaml:"budget"`
	// Outlier is per-instance outlier ejection; the policy and its defaults
	// are the outlier package's.
	Outlier outlier.Config `yaml:"outlier"`
	Policy  `yaml:",inline"`
	Methods map[string]Policy `yaml:"methods"`
}

// Policy is how one call is made: its time limits, retries and breaker.
type Policy struct {
	// Timeout bounds one logical call, retries included; a caller's shorter
	// deadline wins.
	Timeout time.Duration `yaml:"timeout"`
	// AttemptTimeout bounds one attempt, so a hung instance costs one
	// attempt and the retry goes elsewhere.
	AttemptTimeout time.Duration `yaml:"attempt_timeout"`
	Retry          Retry         `yaml:"retry"`
	Breaker        Breaker       `yaml:"breaker"`
}

// Retry is exponential backoff with full jitter. Only methods the proto
// marks NO_SIDE_EFFECTS or IDEMPOTENT are retried.
type Retry struct {
	// MaxAttempts counts the first attempt; 1 disables retry, 5 is the most.
	MaxAttempts    int           `yaml:"max_attempts"`
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff"`
	Multiplier     float64       `yaml:"multiplier"`
}

// Budget caps retries per client target: retries may not exceed Ratio of
// the requests in a sliding window plus MinPerSecond, so an outage cannot
// multiply the load on the dependency.
type Budget struct {
	Ratio        float64 `yaml:"ratio"`
	MinPerSecond int     `yaml:"min_per_second"`
}

// Breaker is the aegis SRE adaptive breaker: it rejects locally with a
// probability that grows as accepted calls fall below Success of requests.
type Breaker struct {
	Success float64       `yaml:"success"`
	Request int64         `yaml:"request"`
	Window  time.Duration `yaml:"window"`
	Bucket  int           `yaml:"bucket"`
}

// Keepalive pings idle connections so a peer that vanished without closing
// them is noticed in Time+Timeout, without waiting for Consul.
type Keepalive struct {
	Time    time.Duration `yaml:"time"`
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultClient is the client every clients.<name> entry starts from.
func DefaultClient() Client {
	return Client{
		Keepalive: Keepalive{Time: 10 * time.Second, Timeout: 2 * time.Second},
		// gRPC's own default.
		IdleTimeout: 30 * time.Minute,
		Budget:      Budget{Ratio: 0.2, MinPerSecond: 10},
		Outlier:     outlier.DefaultConfig(),
		Policy: Policy{
			Timeout:        2 * time.Second,
			AttemptTimeout: 500 * time.Millisecond,
			Retry:          Retry{MaxAttempts: 3, InitialBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2},
			Breaker:        Breaker{Success: 0.6, Request: 100, Window: 3 * time.Second, Bucket: 10},
		},
	}
}

// UnmarshalYAML starts from DefaultClient, and each method override from
// the client's own policy, so a file states only what differs.
func (c *Client) UnmarshalYAML(n *yaml.Node) error {
	var raw struct {
		Target      string         `yaml:"target"`
		Keepalive   yaml.Node      `yaml:"keepalive"`
		IdleTimeout *time.Duration `yaml:"idle_timeout"`
		Budget      yaml.Node      `yaml:"budget"`
		Outlier     yaml.Node      `yaml:"outlier"`
		Policy      `yaml:",inline"`
		Methods     map[string]yaml.Node `yaml:"methods"`
	}
	*c = DefaultClient()
	raw.Policy = c.Policy
	if err := n.Decode(&raw); err != nil {
		return err
	}
	c.Target, c.Policy = raw.Target, raw.Policy
	if raw.IdleTimeout != nil {
		c.IdleTimeout = *raw.IdleTimeout
	}
	// Decoding a sub-node onto the defaults keeps the keys it leaves out.
	if err := decodeOver(&raw.Keepalive, &c.Keepalive); err != nil {
		return err
	}
	if err := decodeOver(&raw.Budget, &c.Budget); err != nil {
		return err
	}
	if err := decodeOver(&raw.Outlier, &c.Outlier); err != nil {
		return err
	}
	if len(raw.Methods) > 0 {
		c.Methods = make(map[string]Policy, len(raw.Methods))
	}
	for name, node := range raw.Methods {
		p := c.Policy
		if err := node.Decode(&p); err != nil {
			return err
		}
		c.Methods[name] = p
	}
	return nil
}

// emptyNullClients makes a client entry without a body ("order:" or
// "order: ~") an empty one ("order: {}"). yaml.v3 does not call
// UnmarshalYAML for null, so the entry would skip DefaultClient and fail a
// dozen "must be > 0" checks on keys the file never set. As {} it starts
// from the defaults like any entry and fails once, on the required target:
// one error that says what the entry lacks.
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

func decodeOver(n *yaml.Node, dst any) error {
	if n.Kind == 0 {
		return nil
	}
	return n.Decode(dst)
}

// PolicyFor returns the policy of a full method name.
func (c *Client) PolicyFor(method string) Policy {
	if p, ok := c.Methods[method]; ok {
		return p
	}
	return c.Policy
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
		emptyNullClients(&doc)
		if err := doc.Decode(c); err != nil {
			return nil, fmt.Errorf("parse config: %w", err)
		}
	}
	if err := c.validate(c.applyEnv(lookup)); err != nil {
		return nil, err
	}
	return c, nil
}

// Default is the configuration a key falls back to when the file omits it.
func Default() *Bootstrap {
	return &Bootstrap{
		Service: Service{Version: "dev"},
		Server: Server{
			GRPC: GRPC{
				Addr: "127.0.0.1:0", Timeout: 5 * time.Second, KeepaliveMinTime: 5 * time.Second, MaxConcurrentStreams: 256,
			},
			HTTP:        HTTP{Addr: "127.0.0.1:0"},
			DrainDelay:  time.Second,
			StopTimeout: 10 * time.Second,
			Shedding: Shedding{
				Enabled: true, CPUThreshold: 800, Window: 10 * time.Second, Bucket: 100, Pushback: 100 * time.Millisecond,
			},
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
