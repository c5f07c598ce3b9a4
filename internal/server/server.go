// Package server is the outer shell of a Rampart service: the gRPC server
// with its middleware chain, the HTTP side port for probes, the Consul
// client and registry, and App, which starts them in order and stops them
// without dropping a call.
package server

import (
	"github.com/go-kratos/kratos/v2/registry"
	"github.com/google/wire"

	"github.com/rampart-go/rampart/internal/consul"
)

// ProviderSet builds the shell every service shares; the service layer
// supplies the service.API it serves.
var ProviderSet = wire.NewSet(
	NewInstance, NewLogger, NewTelemetry, NewConsulClient, NewRegistry, NewHealth, NewProbes, NewStreams, NewHTTPServer, NewGRPCServer, NewApp,
	wire.Bind(new(registry.Registrar), new(*consul.Registry)),
	wire.Bind(new(registry.Discovery), new(*consul.Registry)),
)
