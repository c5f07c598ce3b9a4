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

// commonSet is what every service's shell needs.
var commonSet = wire.NewSet(
	NewInstance, NewLogger, NewTelemetry, NewConsulClient, NewRegistry, NewHealth, NewProbes, NewHTTPServer, NewApp,
	wire.Bind(new(registry.Registrar), new(*consul.Registry)),
	wire.Bind(new(registry.Discovery), new(*consul.Registry)),
)

// UserProviderSet builds the user service's shell.
var UserProviderSet = wire.NewSet(commonSet, NewUserGRPCServer)

// OrderProviderSet builds the order service's shell.
var OrderProviderSet = wire.NewSet(commonSet, NewOrderGRPCServer)
