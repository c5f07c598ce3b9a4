package conf

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Environment variables that override the file. The Consul ones are the
// standard names the consul CLI and consul/api read, so one exported
// CONSUL_HTTP_ADDR points every tool and service at the same agent.
const (
	EnvGRPCAddr    = "RAMPART_GRPC_ADDR"
	EnvAdvertise   = "RAMPART_GRPC_ADVERTISE"
	EnvHTTPAddr    = "RAMPART_HTTP_ADDR"
	EnvGatewayAddr = "RAMPART_GATEWAY_ADDR"
	EnvSQLitePath  = "RAMPART_SQLITE_PATH"
	// EnvDataDriver overrides data.driver, so one config file runs on
	// SQLite or PostgreSQL (make run DATA=postgres).
	EnvDataDriver = "RAMPART_DATA_DRIVER"
	// EnvDatabaseURL overrides data.postgres.url: the name platforms and
	// tools already use for a database's URL.
	EnvDatabaseURL = "DATABASE_URL"
	// EnvSelfRegister overrides registry.self_register (true or false), so
	// one config file serves both a plain process and a scheduled job.
	EnvSelfRegister = "RAMPART_REGISTRY_SELF_REGISTER"
	EnvLogFormat    = "LOG_FORMAT"
	EnvLogLevel     = "LOG_LEVEL"
	// EnvSecurityMode overrides security.mode, so one config file runs
	// plaintext or mtls (make run SECURITY=plaintext).
	EnvSecurityMode = "RAMPART_SECURITY_MODE"
	envConsulAddr   = "CONSUL_HTTP_ADDR"
	envConsulTok    = "CONSUL_HTTP_TOKEN"
	envConsulTokF   = "CONSUL_HTTP_TOKEN_FILE"
	envConsulSSL    = "CONSUL_HTTP_SSL"
	envConsulVer    = "CONSUL_HTTP_SSL_VERIFY"
	envConsulCA     = "CONSUL_CACERT"
	envConsulCert   = "CONSUL_CLIENT_CERT"
	envConsulKey    = "CONSUL_CLIENT_KEY"
)

// applyEnv overrides the file from the environment. It returns an error
// only for a variable whose value cannot mean anything; the Consul TLS
// switches keep consul/api's own leniency and ignore what does not parse.
func (c *Bootstrap) applyEnv(lookup func(string) (string, bool)) []error {
	var errs []error
	set := func(dst *string, key string) {
		if v, ok := lookup(key); ok && v != "" {
			*dst = v
		}
	}
	set(&c.Server.GRPC.Addr, EnvGRPCAddr)
	set(&c.Server.GRPC.Advertise, EnvAdvertise)
	set(&c.Server.HTTP.Addr, EnvHTTPAddr)
	set(&c.Server.Gateway.Addr, EnvGatewayAddr)
	set(&c.Data.SQLite.Path, EnvSQLitePath)
	set(&c.Data.Driver, EnvDataDriver)
	set(&c.Data.Postgres.URL, EnvDatabaseURL)
	set(&c.Log.Format, EnvLogFormat)
	set(&c.Log.Level, EnvLogLevel)
	set(&c.Security.Mode, EnvSecurityMode)
	if v, ok := lookup(EnvSelfRegister); ok && v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, &KeyError{Key: "registry.self_register", Reason: fmt.Sprintf("%s must be true or false, got %q", EnvSelfRegister, v)})
		} else {
			c.Registry.SelfRegister = on
		}
	}

	cc := &c.Registry.Consul
	if v, ok := lookup(envConsulAddr); ok && v != "" {
		// consul/api accepts "https://host:port" in CONSUL_HTTP_ADDR; keep
		// the scheme it names rather than silently downgrading to http.
		if scheme, addr, found := strings.Cut(v, "://"); found {
			cc.Scheme, v = scheme, addr
		}
		cc.Address = v
	}
	if err := cc.resolveToken(lookup); err != nil {
		errs = append(errs, err)
	}
	set(&cc.TLS.CAFile, envConsulCA)
	set(&cc.TLS.CertFile, envConsulCert)
	set(&cc.TLS.KeyFile, envConsulKey)
	if v, ok := lookup(envConsulSSL); ok {
		if on, err := strconv.ParseBool(v); err == nil && on {
			cc.Scheme = "https"
		}
	}
	if v, ok := lookup(envConsulVer); ok {
		if verify, err := strconv.ParseBool(v); err == nil {
			cc.TLS.InsecureSkipVerify = !verify
		}
	}
	return errs
}

// resolveToken settles the ACL token, first of: CONSUL_HTTP_TOKEN_FILE,
// CONSUL_HTTP_TOKEN, registry.consul.token_file, registry.consul.token. A
// file wins over a value at the same level, as in Consul's own tools. The
// file is read here, once, and its content trimmed; one that cannot be read
// or is empty is an error under the key, naming the variable if the
// path came from one. What loses is
// cleared, so the logged configuration shows what is used (the token
// masked, the file's path as is).
func (cc *Consul) resolveToken(lookup func(string) (string, bool)) error {
	from := "" // the key itself
	if v, ok := lookup(envConsulTokF); ok && v != "" {
		cc.TokenFile, cc.Token, from = v, "", envConsulTokF+": "
	} else if v, ok := lookup(envConsulTok); ok && v != "" {
		cc.Token, cc.TokenFile = v, ""
	}
	if cc.TokenFile == "" {
		return nil
	}
	raw, err := os.ReadFile(cc.TokenFile)
	if err != nil {
		return &KeyError{Key: "registry.consul.token_file", Reason: fmt.Sprintf("%scannot read the token: %v", from, err)}
	}
	token := strings.TrimSpace(string(raw))
	if token == "" {
		return &KeyError{Key: "registry.consul.token_file", Reason: fmt.Sprintf("%s%s is empty", from, cc.TokenFile)}
	}
	cc.Token = token
	return nil
}
