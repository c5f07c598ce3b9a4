// Package server is the outer shell of a Rampart service and its
// composition root: Main and Setup (root.go) make every process-wide
// decision at start, ProviderSet hands each component the config section it
// needs, and App runs the gRPC server with its middleware chain, the HTTP
// side port for probes, the public HTTP/JSON gateway that calls the gRPC
// port and the Consul registration, and stops them without dropping a call.
// The Dialer it gives data compiles each client chain once, at dial time.
// In mtls mode (security.mode) the Identity it builds secures both sides:
// the gRPC port, the calls out, the gateway's loopback hop, and the
// authorization step of the server chain.
package server

import (
	"github.com/go-kratos/kratos/v2/registry"
	"github.com/google/wire"

	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/data"
)

// ProviderSet builds the shell every service shares; the service layer
// supplies the service.API it serves. Providers take the section of the
// config they read, not the whole of it: App alone takes the Bootstrap, to
// log the effective configuration at start.
var ProviderSet = wire.NewSet(
	wire.FieldsOf(new(*conf.Bootstrap), "Service", "Server", "Registry", "Clients", "Data", "Log", "Telemetry", "Security", "Env"),
	wire.FieldsOf(new(conf.Server), "GRPC", "Shedding", "Faults", "Gateway"),
	NewInstance, NewLogger, NewTelemetry, NewMeterProvider, NewConsulClient, NewRegistry, NewHealth, NewProbes,
	NewStreams, NewHTTPServer, NewGRPCServer, NewGateway, NewApp, NewDialer,
	NewIdentity, NewTLSSource, NewAuthorization,
	wire.Bind(new(registry.Registrar), new(*consul.Registry)),
	wire.Bind(new(registry.Discovery), new(*consul.Registry)),
	wire.Bind(new(data.Dialer), new(*Dialer)),
)
