package conf_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	// Hedging is checked against the idempotency level the generated
	// packages register.
	_ "github.com/rampart-go/rampart/api/order/v1"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/middleware"
)

func noEnv(string) (string, bool) { return "", false }

func env(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
}

func TestBadValuesNameTheKey(t *testing.T) {
	tests := []struct {
		yaml string
		want string
	}{
		{"service: {name: user}\nregistry: {consul: {health_interval: 0s}}", "registry.consul.health_interval: must be > 0"},
		{"service: {name: User_1}", "service.name: must be lower-case"},
		{"service: {name: user}\nserver: {grpc: {addr: nowhere}}", "server.grpc.addr: must be host:port"},
		{"service: {name: user}\nserver: {grpc: {advertise: nowhere}}", `server.grpc.advertise: must be host:port with a host and a port from 1 to 65535 (what peers dial), got "nowhere"`},
		{"service: {name: user}\nserver: {grpc: {advertise: \"10.0.0.1:0\"}}", `server.grpc.advertise: must be host:port with a host and a port from 1 to 65535`},
		{"service: {name: user}\nserver: {grpc: {advertise: \"0.0.0.0:9000\"}}", "server.grpc.advertise: must be an address peers can dial, not the wildcard 0.0.0.0"},
		{"service: {name: user}\nserver: {gateway: {addr: nowhere}}", `server.gateway.addr: must be host:port, or empty to turn the gateway off, got "nowhere"`},
		{"service: {name: user}\nserver: {gateway: {max_body_bytes: 0}}", "server.gateway.max_body_bytes: must be > 0"},
		{"service: {name: user}\nclients: {order: {target: order:9000, timeout: 1s}}", "clients.order.target: must look like discovery:///<service>"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, timeout: 0s}}", "clients.order.timeout: must be > 0"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, retry: {max_attempts: 9}}}", "clients.order.retry.max_attempts: must be between 1 and 5"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, attempt_timeout: 5s}}", "clients.order.attempt_timeout: must not exceed timeout"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, methods: {/order.v1.OrderService/ListOrders: {retry: {multiplier: 0.5}}}}}", "clients.order.methods./order.v1.OrderService/ListOrders.retry.multiplier: must be >= 1"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, methods: {ListOrders: {}}}}", "clients.order.methods.ListOrders: must be a full method name"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, methods: {/order.v1.OrderService/CreateOrder: {hedging: {delay: 50ms}}}}}", "clients.order.methods./order.v1.OrderService/CreateOrder.hedging: only a method its proto declares idempotency_level = NO_SIDE_EFFECTS may be hedged"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, methods: {/order.v1.OrderService/ListOrders: {retry: {max_attempts: 2}, hedging: {delay: 50ms}}}}}", "clients.order.methods./order.v1.OrderService/ListOrders.hedging: a method has a retry policy or a hedging policy, not both (gRPC A6)"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, methods: {/order.v1.OrderService/ListOrders: {hedging: {delay: -1ms}}}}}", "clients.order.methods./order.v1.OrderService/ListOrders.hedging.delay: must be >= 0"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, methods: {/order.v1.OrderService/ListOrders: {hedging: {delay: 50ms, max_attempts: 9}}}}}", "clients.order.methods./order.v1.OrderService/ListOrders.hedging.max_attempts: must be between 2 and 5, got 9"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, hedging: {delay: 50ms}}}", "clients.order.hedging: unknown key"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, budget: {ratio: 2}}}", "clients.order.budget.ratio: must be between 0 and 1"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, idle_timeout: -1s}}", "clients.order.idle_timeout: must be >= 0"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, outlier: {max_ejection_percent: 101}}}", "clients.order.outlier.max_ejection_percent: must be in 0..100"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, outlier: {base_ejection_time: 10m}}}", "clients.order.outlier.max_ejection_time: must be at least base_ejection_time"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, outlier: {consecutive_failure: 3}}}", "clients.order.outlier.consecutive_failure: unknown key"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, methods: {/order.v1.OrderService/ListOrders: {idle_timeout: 1s}}}}", "idle_timeout: unknown key"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, budget: {ratio: .nan}}}", "clients.order.budget.ratio: must be a finite number, got NaN"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, retry: {multiplier: .nan}}}", "clients.order.retry.multiplier: must be a finite number, got NaN"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, retry: {multiplier: .inf}}}", "clients.order.retry.multiplier: must be a finite number, got +Inf"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, breaker: {success: .nan}}}", "clients.order.breaker.success: must be a finite number, got NaN"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, methods: {/order.v1.OrderService/ListOrders: {breaker: {success: .nan}}}}}", "clients.order.methods./order.v1.OrderService/ListOrders.breaker.success: must be a finite number"},
		{"service: {name: user}\nserver: {faults: {methods: {'*': {abort: {percent: .nan, code: UNAVAILABLE}}}}}", "server.faults.methods.*.abort.percent: NaN is not in 0..100"},
		{"service: {name: user}\ntelemetry: {sampler: traceidratio, sampler_arg: NaN}", `telemetry.sampler_arg: invalid sampler ratio "NaN"`},
		{"service: {name: user}\nserver: {faults: {methods: {'*': {abort: {percent: 10, code: TEAPOT}}}}}", `server.faults.methods.*.abort.code: "TEAPOT" is not a gRPC code name`},
		{"service: {name: user}\nserver: {faults: {methods: {'*': {delay: {percent: 120, duration: 1s}}}}}", "server.faults.methods.*.delay.percent: 120 is not in 0..100"},
		{"service: {name: user}\nserver: {faults: {methods: {'user.v1.UserService/GetUser': {delay: {percent: 10, duration: 1s}}}}}", "server.faults.methods.user.v1.UserService/GetUser: must be * or a full method name like /user.v1.UserService/GetUser"},
		{"service: {name: user}\nserver: {faults: {methods: {'/user.v1.User Service/GetUser': {delay: {percent: 10, duration: 1s}}}}}", "server.faults.methods./user.v1.User Service/GetUser: must be * or a full method name like /user.v1.UserService/GetUser"},
		{"service: {name: user}\nserver: {shedding: {cpu_threshold: 0}}", "server.shedding.cpu_threshold: must be in (0, 1000]"},
		{"service: {name: user}\ndata: {driver: mysql}", "data.driver: must be memory, sqlite or postgres"},
		{"service: {name: user}\ndata: {driver: postgres, postgres: {url: 'postgres://u:pw@h:nan/db'}}", "data.postgres.url: cannot parse"},
		{"service: {name: user}\ndata: {driver: postgres, postgres: {max_conns: 0}}", "data.postgres.max_conns: must be > 0"},
		{"service: {name: user}\ndata: {driver: postgres, postgres: {connect_timeout: 0s}}", "data.postgres.connect_timeout: must be > 0"},
		{"service: {name: user}\ndata: {driver: postgres, postgres: {statement_timeout: -1s}}", "data.postgres.statement_timeout: must be > 0"},
		{"service: {name: user}\ndata: {driver: sqlite}", "data.sqlite.path: must be set"},
		{"service: {name: user}\nregistry: {consul: {health_interval: 1s, health_timeout: 2s}}", "registry.consul.health_timeout: must not exceed health_interval"},
		{"service: {name: user}\nlog: {format: xml}", "log.format: must be text or json"},
		{"service: {name: user}\nsecurity: {mode: tls}", `security.mode: must be plaintext or mtls, got "tls"`},
		{"service: {name: user}\nsecurity: {authz_cache_ttl: 0s}", "security.authz_cache_ttl: must be > 0"},
		{"service: {name: user}\nregistry: {consul: {token_file: /nonexistent/token}}", "registry.consul.token_file: cannot read the token: open /nonexistent/token"},
		{"service: {name: user}\nserver: {grcp: {}}", "server.grcp: unknown key"},
		{"service: {name: user}\nclients: {order: {target: discovery:///order, timeout: 1s, retries: 3}}", "clients.order.retries: unknown key"},
		{"service: {name: user}\nregistry: {consul: {health_interval: soon}}", "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := conf.Parse([]byte(tt.yaml), noEnv)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestClientWithoutBody checks that an entry with nothing under it takes
// the defaults like any entry, and so fails on its missing target only.
func TestClientWithoutBody(t *testing.T) {
	for _, entry := range []string{"order:", "order: ~", "order: null"} {
		t.Run(entry, func(t *testing.T) {
			_, err := conf.Parse([]byte("service: {name: user}\nclients:\n  "+entry+"\n"), noEnv)
			var ke *conf.KeyError
			if !errors.As(err, &ke) || ke.Key != "clients.order.target" {
				t.Fatalf("Parse error = %v, want clients.order.target", err)
			}
			if n := strings.Count(err.Error(), "clients.order."); n != 1 {
				t.Fatalf("Parse error = %v, want the target error only", err)
			}
		})
	}
}

func TestEveryBadKeyIsReported(t *testing.T) {
	_, err := conf.Parse([]byte("service: {name: user}\nserver: {stop_timeout: 0s}\nlog: {level: loud}"), noEnv)
	var keys []string
	for _, e := range unwrapAll(err) {
		var ke *conf.KeyError
		if errors.As(e, &ke) {
			keys = append(keys, ke.Key)
		}
	}
	if strings.Join(keys, ",") != "server.stop_timeout,log.level" {
		t.Fatalf("keys reported = %v (err %v)", keys, err)
	}
}

func unwrapAll(err error) []error {
	if j, ok := errors.Unwrap(err).(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return nil
}

func TestEnvironmentOverrides(t *testing.T) {
	c, err := conf.Parse([]byte("service: {name: order}"), env(map[string]string{
		"CONSUL_HTTP_ADDR":       "https://consul.internal:8501",
		"CONSUL_HTTP_TOKEN":      "s3cret",
		"CONSUL_CACERT":          "/etc/ca.pem",
		"CONSUL_HTTP_SSL_VERIFY": "false",
		"RAMPART_GRPC_ADDR":      "127.0.0.1:9000",
		"RAMPART_GATEWAY_ADDR":   "0.0.0.0:8080",
		"RAMPART_SQLITE_PATH":    "/tmp/x.db",
		"LOG_FORMAT":             "json",
	}))
	if err != nil {
		t.Fatal(err)
	}
	cc := c.Registry.Consul
	if cc.Address != "consul.internal:8501" || cc.Scheme != "https" || cc.Token != "s3cret" ||
		cc.TLS.CAFile != "/etc/ca.pem" || !cc.TLS.InsecureSkipVerify {
		t.Fatalf("consul overrides not applied: %+v", cc)
	}
	if c.Server.GRPC.Addr != "127.0.0.1:9000" || c.Server.Gateway.Addr != "0.0.0.0:8080" || c.Data.SQLite.Path != "/tmp/x.db" || c.Log.Format != "json" {
		t.Fatalf("overrides not applied: grpc=%s gateway=%s sqlite=%s log=%s",
			c.Server.GRPC.Addr, c.Server.Gateway.Addr, c.Data.SQLite.Path, c.Log.Format)
	}
	if m := c.Masked(); m.Registry.Consul.Token != "***" || c.Registry.Consul.Token != "s3cret" {
		t.Fatalf("Masked token = %q, original = %q", m.Registry.Consul.Token, c.Registry.Consul.Token)
	}
}

// DATABASE_URL and RAMPART_DATA_DRIVER select PostgreSQL, and the
// password never reaches the logged copy, in either DSN form.
func TestPostgresFromEnvironmentIsMasked(t *testing.T) {
	tests := []struct{ url, masked string }{
		{"postgres://app:s3cret@db.internal:5432/shop?sslmode=require", "postgres://app:***@db.internal:5432/shop?sslmode=require"},
		{"postgres://db.internal/shop?user=app&password=s3cret", "postgres://db.internal/shop?password=***&user=app"},
		{"host=db.internal user=app password=s3cret dbname=shop", "host=db.internal user=app password=*** dbname=shop"},
		{"host=db.internal password='s3 cret' dbname=shop", "host=db.internal password=*** dbname=shop"},
	}
	for _, tt := range tests {
		c, err := conf.Parse([]byte("service: {name: order}"), env(map[string]string{
			"RAMPART_DATA_DRIVER": "postgres",
			"DATABASE_URL":        tt.url,
		}))
		if err != nil {
			t.Fatal(err)
		}
		if c.Data.Driver != conf.DriverPostgres || c.Data.Postgres.URL != tt.url {
			t.Fatalf("overrides not applied: driver=%s url=%s", c.Data.Driver, c.Data.Postgres.URL)
		}
		if m := c.Masked().Data.Postgres.URL; m != tt.masked || strings.Contains(fmt.Sprintf("%+v", c.Masked()), "s3") {
			t.Errorf("Masked url = %q, want %q", m, tt.masked)
		}
	}
}

func TestEmptyFileTakesDefaultsButNeedsAName(t *testing.T) {
	_, err := conf.Parse(nil, noEnv)
	if err == nil || !strings.Contains(err.Error(), "service.name") {
		t.Fatalf("empty config: %v, want service.name named", err)
	}
}

func TestMethodOverridesInheritTheClientPolicy(t *testing.T) {
	c, err := conf.Parse([]byte(`
service: {name: order}
clients:
  user:
    target: discovery:///user
    timeout: 3s
    retry: {max_attempts: 4}
    methods:
      /user.v1.UserService/GetUser:
        timeout: 300ms
        attempt_timeout: 100ms
`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Clients["user"]
	def := middleware.DefaultClientConfig()
	if cl.Timeout != 3*time.Second || cl.Retry.MaxAttempts != 4 || cl.AttemptTimeout != def.AttemptTimeout || cl.Breaker != def.Breaker {
		t.Fatalf("client policy = %+v; want file values over defaults", cl.Policy)
	}
	get := cl.Methods["/user.v1.UserService/GetUser"]
	if get.Timeout != 300*time.Millisecond || get.AttemptTimeout != 100*time.Millisecond ||
		get.Retry.MaxAttempts != 4 || get.Retry.InitialBackoff != def.Retry.InitialBackoff {
		t.Fatalf("override = %+v; want its own timeouts and the client's retry", get)
	}
	if len(cl.Methods) != 1 {
		t.Fatalf("method overrides = %+v, want the one in the file", cl.Methods)
	}
	if cl.Keepalive != def.Keepalive || cl.Budget != def.Budget || cl.IdleTimeout != def.IdleTimeout || cl.Outlier != def.Outlier {
		t.Fatalf("keepalive/budget/idle_timeout = %+v/%+v/%v, want defaults", cl.Keepalive, cl.Budget, cl.IdleTimeout)
	}
}

func TestUnknownKeyInsideAFault(t *testing.T) {
	_, err := conf.Parse([]byte("service: {name: user}\nserver: {faults: {methods: {'*': {delay: {percent: 5, duraton: 1s}}}}}"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "server.faults.methods.*.delay.duraton: unknown key") {
		t.Fatalf("Parse error = %v, want the misspelt key named", err)
	}
}

func TestSelfRegister(t *testing.T) {
	tests := []struct {
		yaml, env string
		want      bool
		err       string
	}{
		{yaml: "service: {name: user}", want: true},
		{yaml: "service: {name: user}\nregistry: {self_register: false}", want: false},
		{yaml: "service: {name: user}", env: "false", want: false},
		{yaml: "service: {name: user}\nregistry: {self_register: false}", env: "true", want: true},
		{yaml: "service: {name: user}", env: "nomad", err: `registry.self_register: RAMPART_REGISTRY_SELF_REGISTER must be true or false, got "nomad"`},
		{yaml: "service: {name: user}\nregistry: {self_register: maybe}", err: "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.yaml+"/"+tt.env, func(t *testing.T) {
			lookup := noEnv
			if tt.env != "" {
				lookup = env(map[string]string{conf.EnvSelfRegister: tt.env})
			}
			c, err := conf.Parse([]byte(tt.yaml), lookup)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Parse error = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Registry.SelfRegister != tt.want {
				t.Fatalf("self_register = %v, want %v", c.Registry.SelfRegister, tt.want)
			}
		})
	}
}

// The OTEL_* variables are read through the lookup Parse is given, like
// every other override, never from the process: a variable set in the
// process but not in the lookup changes nothing.
func TestTelemetryReadsTheParseLookup(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "bogus")
	if _, err := conf.Parse([]byte("service: {name: user}"), noEnv); err != nil {
		t.Fatalf("Parse read the process environment: %v", err)
	}
	_, err := conf.Parse([]byte("service: {name: user}"), env(map[string]string{"OTEL_TRACES_SAMPLER": "bogus"}))
	if err == nil || !strings.Contains(err.Error(), `OTEL_TRACES_SAMPLER: unknown sampler "bogus"`) {
		t.Fatalf("Parse error = %v, want the lookup's OTEL_TRACES_SAMPLER named", err)
	}
}

// budget.ratio 0 is a meaning, not a default: only the min_per_second
// floor of retries (internal/middleware/retry.BudgetConfig).
func TestBudgetRatioZeroIsKept(t *testing.T) {
	c, err := conf.Parse([]byte("service: {name: user}\nclients: {order: {target: discovery:///order, budget: {ratio: 0}}}"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Clients["order"].Budget; b.Ratio != 0 || b.MinPerSecond != 10 {
		t.Fatalf("budget = %+v, want ratio 0 kept and the default floor", b)
	}
}

// An empty server.gateway.addr is valid and turns the public listener
// off; a file that leaves the key out gets the loopback default.
func TestGatewayAddr(t *testing.T) {
	off, err := conf.Parse([]byte("service: {name: user}\nserver: {gateway: {addr: ''}}"), noEnv)
	if err != nil || off.Server.Gateway.Addr != "" {
		t.Fatalf("addr '' = %q, %v; want off", off.Server.Gateway.Addr, err)
	}
	def, err := conf.Parse([]byte("service: {name: user}"), noEnv)
	if err != nil || def.Server.Gateway.Addr != "127.0.0.1:0" || def.Server.Gateway.MaxBodyBytes != 4<<20 {
		t.Fatalf("defaults = %+v, %v; want 127.0.0.1:0 and 4 MiB", def.Server.Gateway, err)
	}
}

// security.mode comes from RAMPART_SECURITY_MODE when it is set, and a bad
// value from there is reported under the key.
func TestSecurityMode(t *testing.T) {
	c, err := conf.Parse([]byte("service: {name: user}"), noEnv)
	if err != nil || c.Security.Mode != conf.SecurityPlaintext || c.Security.AuthzCacheTTL != time.Second {
		t.Fatalf("default: %+v, %v; want plaintext, 1s", c.Security, err)
	}
	c, err = conf.Parse([]byte("service: {name: user}"), env(map[string]string{"RAMPART_SECURITY_MODE": "mtls"}))
	if err != nil || c.Security.Mode != conf.SecurityMTLS {
		t.Fatalf("RAMPART_SECURITY_MODE=mtls: %+v, %v", c.Security, err)
	}
	_, err = conf.Parse([]byte("service: {name: user}"), env(map[string]string{"RAMPART_SECURITY_MODE": "MTLS"}))
	if err == nil || !strings.Contains(err.Error(), `security.mode: must be plaintext or mtls, got "MTLS"`) {
		t.Fatalf("RAMPART_SECURITY_MODE=MTLS: %v", err)
	}
}

// The token comes from the first of CONSUL_HTTP_TOKEN_FILE,
// CONSUL_HTTP_TOKEN, token_file, token; a file is read once and trimmed,
// and the token never reaches the logged copy.
func TestConsulToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	envFile := write("env-token", "  from-env-file\n")
	confFile := write("conf-token", "from-conf-file\n")
	empty := write("empty", " \n")
	tests := []struct {
		name    string
		yaml    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"file value", "token: from-conf", nil, "from-conf", ""},
		{"file's token_file wins over token", "{token: from-conf, token_file: " + confFile + "}", nil, "from-conf-file", ""},
		{"CONSUL_HTTP_TOKEN wins over the file", "token_file: " + confFile, map[string]string{"CONSUL_HTTP_TOKEN": "from-env"}, "from-env", ""},
		{"CONSUL_HTTP_TOKEN_FILE wins over all", "token: from-conf", map[string]string{"CONSUL_HTTP_TOKEN": "from-env", "CONSUL_HTTP_TOKEN_FILE": envFile}, "from-env-file", ""},
		{"unreadable file names the variable", "", map[string]string{"CONSUL_HTTP_TOKEN_FILE": filepath.Join(dir, "missing")}, "", "registry.consul.token_file: CONSUL_HTTP_TOKEN_FILE: cannot read the token"},
		{"empty file", "token_file: " + empty, nil, "", "registry.consul.token_file: " + empty + " is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := "service: {name: user}\n"
			if tt.yaml != "" {
				raw += "registry: {consul: " + tt.yaml + "}\n"
				if !strings.HasPrefix(tt.yaml, "{") {
					raw = "service: {name: user}\nregistry: {consul: {" + tt.yaml + "}}\n"
				}
			}
			c, err := conf.Parse([]byte(raw), env(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Registry.Consul.Token; got != tt.want {
				t.Errorf("token = %q, want %q", got, tt.want)
			}
			if logged := fmt.Sprintf("%+v", c.Masked()); strings.Contains(logged, tt.want) {
				t.Errorf("the logged config shows the token: %s", logged)
			}
		})
	}
}

// TestHedgingIsPerMethodAndOff checks that hedging is off unless a method
// asks for it, and that a hedged override keeps the client's other values.
func TestHedgingIsPerMethodAndOff(t *testing.T) {
	c, err := conf.Parse([]byte(`
service: {name: user}
clients:
  order:
    target: discovery:///order
    methods:
      /order.v1.OrderService/ListOrders: {hedging: {delay: 50ms}}
      /order.v1.OrderService/GetOrder: {timeout: 1s}
`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Clients["order"]
	list, get := cl.Methods["/order.v1.OrderService/ListOrders"], cl.Methods["/order.v1.OrderService/GetOrder"]
	if list.Hedging.Delay != 50*time.Millisecond || list.Hedging.MaxAttempts != 2 {
		t.Errorf("ListOrders hedging = %+v, want 50ms and the default 2 attempts", list.Hedging)
	}
	if list.Policy != cl.Policy {
		t.Errorf("ListOrders policy = %+v, want the client's %+v", list.Policy, cl.Policy)
	}
	if get.Hedging.Enabled() {
		t.Errorf("GetOrder hedging = %+v, want off", get.Hedging)
	}
}
