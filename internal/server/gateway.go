package server

import (
	"errors"

	"github.com/rampart-go/rampart/internal/gateway"
	"github.com/rampart-go/rampart/internal/service"
)

// NewGateway returns the public HTTP/JSON listener of api, or nil when
// server.gateway.addr is empty: the gateway is off. App binds it, connects
// it to the gRPC port once that is bound, and stops it first.
func NewGateway(c gateway.Config, api service.API) (*gateway.Gateway, error) {
	if c.Addr == "" {
		return nil, nil
	}
	if api.Gateway == nil {
		return nil, errors.New("server.gateway.addr is set but the service has no HTTP routes (service.API.Gateway is nil); set it, or set the addr to \"\"")
	}
	return gateway.New(c, api.Gateway), nil
}
