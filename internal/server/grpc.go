package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	apimd "github.com/go-kratos/kratos/v2/api/metadata"
	"github.com/go-kratos/kratos/v2/log"
	kmiddleware "github.com/go-kratos/kratos/v2/middleware"
	"github.com/go-kratos/kratos/v2/transport"
	"google.golang.org/grpc"
	"google.golang.org/grpc/admin"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"

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

var (
	_ transport.Server     = (*GRPCServer)(nil)
	_ transport.Endpointer = (*GRPCServer)(nil)
)

// GRPCServer is the gRPC port of an instance: a grpc.Server whose API
// methods run the server chain, compiled once per method when the API is
// registered, and which App starts and stops as a Kratos transport.Server.
//
// It replaces Kratos' transport/grpc server, whose unary interceptor cost
// 20 allocations and 2 goroutines per call (issue 16): it copied the
// incoming metadata, rebuilt the middleware chain with Match on every call,
// merged the call's context with the server's (ic.Merge, a goroutine
// watching both), and capped the deadline with a context.WithTimeout whose
// parent, that merged context, the context package could not recognise (a
// second goroutine). Here a call of the API looks its compiled chain up in
// a map, gets one context that is also its Kratos transport, and a deadline
// context only when the cap is shorter than the caller's deadline; no
// goroutine is started. Every other service on the port (health,
// reflection, channelz, kratos.api.Metadata) is served unchained.
type GRPCServer struct {
	*grpc.Server
	addr    string
	secure  bool
	timeout time.Duration
	// methods is the compiled chain of each chained method, by full method.
	// Written only while services are registered, before Start: calls read
	// it without a lock.
	methods    map[string]kmiddleware.Handler
	lis        net.Listener
	endpoint   *url.URL
	endpointS  string // endpoint.String(), once, for every call's transport
	adminClean func()
}

// NewGRPCServer builds the server every service shares around the API it
// serves: the server chain, the per-call timeout cap (server.grpc.timeout),
// reflection (so grpcurl works), channelz and kratos.api.Metadata as
// Kratos' server registered them, streams that App can end at stop, and
// the health server App drives. In mtls mode (id not nil) the port takes
// only mutual TLS with a client certificate of the trust domain
// (mtls.ServerConfig).
//
// The chain is scoped to the API service so that health checks neither
// fill the log nor meet the API's authorization, load shedding and fault
// injection: health and reflection answer any client that completed the
// handshake. A nil tel leaves the port without server spans (tests), an
// api without Desc serves no API.
func NewGRPCServer(g conf.GRPC, chain middleware.ServerChain, hs *health.Server, tel *telemetry.Telemetry,
	streams *Streams, api service.API, id *Identity,
) *GRPCServer {
	s := &GRPCServer{addr: g.Addr, timeout: g.Timeout, methods: map[string]kmiddleware.Handler{}}
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(g.MaxConcurrentStreams),
		grpc.KeepaliveEnforcementPolicy(serverKeepalive(g)),
		grpc.ChainUnaryInterceptor(s.unary),
		grpc.ChainStreamInterceptor(streams.Interceptor()),
	}
	if tel != nil {
		// gRPC runs these (grpc.UnaryInterceptor, grpc.StreamInterceptor)
		// before every chained one: the server span is open before any
		// middleware, so every log line of the call carries its trace id.
		opts = append(opts, tel.ServerInterceptor(), tel.ServerStreamInterceptor())
	}
	if tlsConf := id.serverTLS(); tlsConf != nil {
		s.secure = true
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConf)))
	}
	s.Server = grpc.NewServer(opts...)
	if api.Desc != nil {
		s.RegisterChained(api.Desc, api.Impl, chain...)
	}
	healthpb.RegisterHealthServer(s.Server, hs)
	apimd.RegisterMetadataServer(s.Server, apimd.NewServer(s.Server))
	reflection.Register(s.Server)
	// channelz (and CSDS when xDS is linked in); the error is only for
	// services that cannot be registered, and Kratos ignored it too.
	s.adminClean, _ = admin.Register(s.Server)
	return s
}

// RegisterChained registers impl for desc, each unary method behind the
// middleware ms (outermost first), the chain composed here once per
// method. Call it before Start, as RegisterService. Services registered
// with RegisterService run no middleware.
func (s *GRPCServer) RegisterChained(desc *grpc.ServiceDesc, impl any, ms ...kmiddleware.Middleware) {
	s.RegisterService(desc, impl)
	for _, m := range desc.Methods {
		s.methods["/"+desc.ServiceName+"/"+m.MethodName] = kmiddleware.Chain(ms...)(invokeHandler)
	}
}

// Bind hands the server the listener App bound and the endpoint it
// advertises; a nil endpoint is derived from the listener. Call it before
// Start; without it Start listens on server.grpc.addr.
func (s *GRPCServer) Bind(lis net.Listener, endpoint *url.URL) {
	s.lis = lis
	if endpoint != nil {
		s.setEndpoint(endpoint)
	}
}

func (s *GRPCServer) setEndpoint(u *url.URL) {
	s.endpoint, s.endpointS = u, u.String()
}

// Endpoint is the URL registered for the port (transport.Endpointer):
// grpc://host:port, grpcs:// in mtls mode, unless Bind set another.
func (s *GRPCServer) Endpoint() (*url.URL, error) {
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s.endpoint, nil
}

// listen binds server.grpc.addr unless Bind handed a listener, and derives
// the endpoint from the listener unless Bind set one.
func (s *GRPCServer) listen() error {
	if s.lis == nil {
		var lc net.ListenConfig
		lis, err := lc.Listen(context.Background(), "tcp", s.addr)
		if err != nil {
			return fmt.Errorf("listen grpc on %s: %w", s.addr, err)
		}
		s.lis = lis
	}
	if s.endpoint == nil {
		scheme := "grpc"
		if s.secure {
			scheme = "grpcs"
		}
		s.setEndpoint(&url.URL{Scheme: scheme, Host: advertised(s.lis.Addr())})
	}
	return nil
}

// Start serves until Stop (transport.Server). Calls do not inherit ctx:
// a call in flight when the instance is asked to stop is drained by Stop,
// not cancelled.
func (s *GRPCServer) Start(context.Context) error {
	if err := s.listen(); err != nil {
		return err
	}
	log.Infof("[gRPC] server listening on: %s", s.lis.Addr().String())
	if err := s.Serve(s.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// Stop stops gracefully, letting the calls in flight finish, and forces
// the stop (closing every connection) when ctx ends first
// (transport.Server). App gives it server.stop_timeout.
func (s *GRPCServer) Stop(ctx context.Context) error {
	if s.adminClean != nil {
		s.adminClean()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		log.Info("[gRPC] server stopping")
		s.GracefulStop()
	}()
	select {
	case <-done:
	case <-ctx.Done():
		log.Warn("[gRPC] server couldn't stop gracefully in time, doing force stop")
		s.Server.Stop()
		<-done
	}
	return nil
}

// unary is the server's chained unary interceptor: gRPC runs it inside the
// telemetry interceptor, for every unary call of every service. A method
// with no compiled chain (health, reflection's unary calls, none today)
// goes straight to its handler.
func (s *GRPCServer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	h, ok := s.methods[info.FullMethod]
	if !ok {
		return handler(ctx, req)
	}
	if s.timeout > 0 {
		// One deadline per call: the caller's, or the cap if it comes
		// first. The parent is gRPC's own context, so WithTimeout starts
		// no goroutine to propagate its cancellation.
		if d, has := ctx.Deadline(); !has || time.Until(d) > s.timeout {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.timeout)
			defer cancel()
		}
	}
	call := newServerCall(ctx, s.endpointS, info.FullMethod, handler)
	reply, err := h(call.withTransport(), req)
	if len(call.tr.reply) > 0 {
		_ = grpc.SetHeader(ctx, metadata.MD(call.tr.reply))
	}
	return reply, err
}

// serverKeepalive lets clients ping, idle connections included, as often as
// server.grpc.keepalive_min_time: the client chain pings idle connections
// (middleware.Keepalive.Params), and a server that refused pings without a
// stream would answer every idle client's ping with GOAWAY too_many_pings.
func serverKeepalive(g conf.GRPC) keepalive.EnforcementPolicy {
	return keepalive.EnforcementPolicy{MinTime: g.KeepaliveMinTime, PermitWithoutStream: true}
}
