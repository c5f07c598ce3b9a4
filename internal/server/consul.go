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
	cfg.Token = cc.Token
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

// NewRegistry returns the Consul registry with the health-check timings
// from config; the cleanup stops its background retries and watchers.
func NewRegistry(client *api.Client, rc conf.Registry, logger log.Logger) (*consul.Registry, func()) {
	cc := rc.Consul
	r := consul.New(client,
		consul.WithHealthCheck(cc.HealthInterval, cc.HealthTimeout, cc.DeregisterAfter),
		consul.WithLogger(logger),
	)
	return r, func() { _ = r.Close() }
}
