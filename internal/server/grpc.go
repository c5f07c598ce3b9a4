package server

import (
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/service"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// NewHealth returns the grpc.health.v1 server that Consul's gRPC check and
// clients' health checking read. App owns its status: SERVING while the
// instance takes calls, NOT_SERVING from the first moment of shutdown.
func NewHealth() *health.Server {
	return health.NewServer()
}

// NewGRPCServer builds the server every service shares around the API it
// serves: the server chain, the per-call timeout cap, reflection (on by
// default in Kratos, so grpcurl works), streams that App can end at stop,
// and our own health server in place of
// Kratos' built-in one, whose status we could not drive. In mtls mode
// (id not nil) the port takes only mutual TLS with a client certificate
// of the trust domain (mtls.ServerConfig).
//
// The chain is scoped to the API service so that health checks neither
// fill the log nor meet the API's authorization, load shedding and fault
// injection: health and reflection answer any client that completed the
// handshake.
func NewGRPCServer(g conf.GRPC, chain middleware.ServerChain, hs *health.Server, tel *telemetry.Telemetry,
	streams *Streams, api service.API, id *Identity,
) *kgrpc.Server {
	var secure []kgrpc.ServerOption
	if tlsConf := id.serverTLS(); tlsConf != nil {
		secure = append(secure, kgrpc.TLSConfig(tlsConf))
	}
	srv := kgrpc.NewServer(append(secure,
		kgrpc.Timeout(g.Timeout),
		kgrpc.CustomHealth(),
		kgrpc.StreamInterceptor(streams.Interceptor()),
		// The telemetry interceptors open the server span before any
		// middleware, so every log line of the call carries its trace id.
		kgrpc.Options(
			grpc.MaxConcurrentStreams(g.MaxConcurrentStreams),
			grpc.KeepaliveEnforcementPolicy(serverKeepalive(g)),
			tel.ServerInterceptor(),
			tel.ServerStreamInterceptor(),
		),
	)...)
	srv.Use("/"+api.Desc.ServiceName+"/*", chain...)
	srv.RegisterService(api.Desc, api.Impl)
	healthpb.RegisterHealthServer(srv, hs)
	return srv
}

// serverKeepalive lets clients ping, idle connections included, as often as
// server.grpc.keepalive_min_time: the client chain pings idle connections
// (middleware.Keepalive.Params), and a server that refused pings without a
// stream would answer every idle client's ping with GOAWAY too_many_pings.
func serverKeepalive(g conf.GRPC) keepalive.EnforcementPolicy {
	return keepalive.EnforcementPolicy{MinTime: g.KeepaliveMinTime, PermitWithoutStream: true}
}
