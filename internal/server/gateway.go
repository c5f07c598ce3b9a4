package server

import (
	"github.com/go-kratos/kratos/v2/log"

	"github.com/rampart-go/rampart/internal/gateway"
	"github.com/rampart-go/rampart/internal/service"
)

// NewGateway returns the public HTTP/JSON listener of api, or nil when the
// gateway is off: server.gateway.addr is empty, or the service has no HTTP
// routes (a gRPC-only service leaves service.API.Gateway nil; it says so at
// start rather than failing, since RAMPART_GATEWAY_ADDR is set for every
// instance a launcher starts). App binds the gateway, connects it to the
// gRPC port once that is bound, and stops it first.
func NewGateway(c gateway.Config, api service.API, logger log.Logger) *gateway.Gateway {
	if c.Addr == "" {
		return nil
	}
	if api.Gateway == nil {
		log.NewHelper(logger).Warnf("server.gateway.addr is %s but the service has no HTTP routes (service.API.Gateway is nil): no gateway", c.Addr)
		return nil
	}
	return gateway.New(c, api.Gateway)
}
