package conf

import (
	"strconv"
	"strings"
)

// Environment variables that override the file. The Consul ones are the
// standard names the consul CLI and consul/api read, so one exported
// CONSUL_HTTP_ADDR points every tool and service at the same agent.
const (
	EnvGRPCAddr   = "RAMPART_GRPC_ADDR"
	EnvHTTPAddr   = "RAMPART_HTTP_ADDR"
	EnvSQLitePath = "RAMPART_SQLITE_PATH"
	EnvLogFormat  = "LOG_FORMAT"
	EnvLogLevel   = "LOG_LEVEL"
	envConsulAddr = "CONSUL_HTTP_ADDR"
	envConsulTok  = "CONSUL_HTTP_TOKEN"
	envConsulSSL  = "CONSUL_HTTP_SSL"
	envConsulVer  = "CONSUL_HTTP_SSL_VERIFY"
	envConsulCA   = "CONSUL_CACERT"
	envConsulCert = "CONSUL_CLIENT_CERT"
	envConsulKey  = "CONSUL_CLIENT_KEY"
)

func (c *Bootstrap) applyEnv(lookup func(string) (string, bool)) {
	set := func(dst *string, key string) {
		if v, ok := lookup(key); ok && v != "" {
			*dst = v
		}
	}
	set(&c.Server.GRPC.Addr, EnvGRPCAddr)
	set(&c.Server.HTTP.Addr, EnvHTTPAddr)
	set(&c.Data.SQLite.Path, EnvSQLitePath)
	set(&c.Log.Format, EnvLogFormat)
	set(&c.Log.Level, EnvLogLevel)

	cc := &c.Registry.Consul
	if v, ok := lookup(envConsulAddr); ok && v != "" {
		// consul/api accepts "https://host:port" in CONSUL_HTTP_ADDR; keep
		// the scheme it names rather than silently downgrading to http.
		if scheme, addr, found := strings.Cut(v, "://"); found {
			cc.Scheme, v = scheme, addr
		}
		cc.Address = v
	}
	set(&cc.Token, envConsulTok)
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
}
