package server

import (
	"fmt"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/hashicorp/consul/api"

	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/consul"
)

// NewConsulClient builds a client from registry.consul (environment
// overrides already applied by conf). It does not contact the agent: an
// agent that is down at start is retried in the background, not fatal.
func NewConsulClient(r conf.Registry) (*api.Client, error) {
	cc := r.Consul
	cfg := api.DefaultConfig()
	cfg.Address = cc.Address
	cfg.Scheme = cc.Scheme
	cfg.Datacenter = cc.Datacenter
	// conf has settled the token (CONSUL_HTTP_TOKEN_FILE included) and
	// read any file; api must not read one again behind it.
	cfg.Token, cfg.TokenFile = cc.Token, ""
	cfg.TLSConfig = api.TLSConfig{
		CAFile:             cc.TLS.CAFile,
		CertFile:           cc.TLS.CertFile,
		KeyFile:            cc.TLS.KeyFile,
		InsecureSkipVerify: cc.TLS.InsecureSkipVerify,
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", cc.Address, err)
	}
	return client, nil
}

// metaHTTP is the instance metadata key of the side port's address
// (/healthz, /readyz, /metrics).
const metaHTTP = "http"

// NewRegistry returns the Consul registry with the health-check timings
// from config; the cleanup stops its background retries and watchers. In
// mtls mode Consul checks /readyz on the side port instead of the gRPC
// health service: the gRPC port takes only clients with a certificate of
// the trust domain, and the agent has none to present. /readyz turns 503
// at the same moment the gRPC health turns NOT_SERVING (App.stop).
func NewRegistry(client *api.Client, rc conf.Registry, sec conf.Security, logger log.Logger) (*consul.Registry, func()) {
	cc := rc.Consul
	opts := []consul.Option{
		consul.WithHealthCheck(cc.HealthInterval, cc.HealthTimeout, cc.DeregisterAfter),
		consul.WithLogger(logger),
	}
	if sec.Mode == conf.SecurityMTLS {
		opts = append(opts, consul.WithHTTPCheck(metaHTTP, "/readyz"))
	}
	r := consul.New(client, opts...)
	return r, func() { _ = r.Close() }
}
