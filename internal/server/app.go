package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/registry"
	"google.golang.org/grpc/health"

	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/gateway"
)

// App runs one service instance: it binds its ports (gRPC, the HTTP side
// port and, unless it is off, the public gateway), registers in Consul and,
// when its context ends, stops in the order that loses no call:
// NOT_SERVING -> deregister -> drain delay -> end streams -> gateway
// Shutdown -> GracefulStop. With registry.self_register false a scheduler
// owns the registration, so App neither registers nor deregisters; the rest
// of the order is the same.
//
// In mtls mode (an Identity) App waits for the instance's first
// certificate after binding, serving only the side port (/readyz 503)
// meanwhile: it neither serves gRPC nor registers without one, and a stop
// requested while it waits ends it cleanly.
type App struct {
	c       *conf.Bootstrap
	inst    Instance
	log     *log.Helper
	grpc    *GRPCServer
	http    *http.Server
	gateway *gateway.Gateway // nil when server.gateway.addr is empty
	reg     registry.Registrar
	health  *health.Server
	probes  *Probes
	streams *Streams
	id      *Identity // nil in plaintext mode
}

// NewApp assembles an App; nothing starts until Run. gw is nil when the
// gateway is off, id in plaintext mode.
func NewApp(c *conf.Bootstrap, inst Instance, logger log.Logger, grpcSrv *GRPCServer, httpSrv *http.Server,
	gw *gateway.Gateway, reg registry.Registrar, hs *health.Server, probes *Probes, streams *Streams, id *Identity,
) *App {
	return &App{
		c: c, inst: inst, log: log.NewHelper(logger), grpc: grpcSrv, http: httpSrv, gateway: gw, reg: reg,
		health: hs, probes: probes, streams: streams, id: id,
	}
}

// Run serves until ctx ends (the caller ties it to SIGINT/SIGTERM), then
// stops gracefully. It returns an error only if a server fails on its own
// or Consul rejects the registration's definition. A registration Consul
// refuses (an ACL token without service:write) or cannot take (the agent
// down) does not stop the instance: the registry logs it and retries in
// the background, and the instance serves, undiscovered, meanwhile.
func (a *App) Run(ctx context.Context) error {
	a.log.Infof("starting %s %s with config %+v", a.inst.ID, a.inst.Version, a.c.Masked())
	lis, err := a.bind(ctx)
	if err != nil {
		return nil //nolint:nilerr // stopped before the ports came free: a clean exit
	}
	if a.gateway != nil {
		// Over loopback: the gateway's calls never leave the host, whatever
		// address the gRPC port is bound to. In mtls mode it presents the
		// instance's own certificate, which the server chain lets through
		// without an intention (same identity): HTTP callers are
		// authenticated by nothing here, the public listener is the edge.
		if err := a.gateway.Connect(loopback(lis.grpc.Addr()), a.id.selfTLS()); err != nil {
			lis.close()
			return err
		}
	}
	// The scheme tells clients which credentials the port wants: Kratos'
	// resolver hands a TLS client only grpcs:// endpoints, a plaintext one
	// only grpc:// ones (isSecure is the older Kratos spelling, kept).
	grpcURL := &url.URL{Scheme: "grpc", Host: advertiseGRPC(a.c.Server.GRPC.Advertise, lis.grpc.Addr()), RawQuery: "isSecure=false"}
	if a.id != nil {
		grpcURL.Scheme, grpcURL.RawQuery = "grpcs", "isSecure=true"
	}
	// The listener bound above (with retry) and the endpoint it yields.
	a.grpc.Bind(lis.grpc, grpcURL)
	failed := make(chan error, 3)
	// The side port first: /healthz answers while the instance waits for
	// its certificate, /readyz says 503 until it serves.
	a.serveHTTP(lis.http, failed)
	if err := a.id.wait(ctx, a.log); err != nil {
		a.abort(lis)
		if ctx.Err() != nil {
			a.log.Info("shutdown requested before the first certificate: nothing was served or registered")
			return nil
		}
		return err
	}
	a.serve(ctx, lis, failed)
	ins := &registry.ServiceInstance{
		ID:        a.inst.ID,
		Name:      a.inst.Name,
		Version:   a.inst.Version,
		Metadata:  map[string]string{metaHTTP: advertised(lis.http.Addr())},
		Endpoints: []string{grpcURL.String()},
	}
	gatewayAddr := "off"
	if lis.gateway != nil {
		// Clients outside the cluster find the public listener here.
		gatewayAddr = advertised(lis.gateway.Addr())
		ins.Metadata["gateway"] = gatewayAddr
	}
	if a.c.Registry.SelfRegister {
		if err := a.reg.Register(ctx, ins); err != nil {
			a.stop(ins)
			return fmt.Errorf("register %s: %w", ins.ID, err)
		}
	} else {
		a.log.Info("registry.self_register is false: the scheduler registers this instance in Consul")
	}
	a.probes.SetReady(true)
	a.log.Infof("serving grpc=%s http=%s gateway=%s", ins.Endpoints[0], ins.Metadata[metaHTTP], gatewayAddr)

	select {
	case <-ctx.Done():
		a.log.Info("shutdown requested")
		a.stop(ins)
		return nil
	case err := <-failed:
		a.log.Errorf("stopping after failure: %v", err)
		a.stop(ins)
		return err
	}
}

// serveHTTP starts the side port; failed receives its error if it fails
// on its own.
func (a *App) serveHTTP(lis net.Listener, failed chan<- error) {
	go func() {
		if err := a.http.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			failed <- fmt.Errorf("http server: %w", err)
		}
	}()
}

// serve starts the gRPC server and the gateway on their listeners; failed
// receives the error of one that fails on its own.
func (a *App) serve(ctx context.Context, lis listeners, failed chan<- error) {
	go func() {
		// Calls do not inherit ctx: those in flight at the shutdown signal
		// drain in Stop.
		if err := a.grpc.Start(ctx); err != nil {
			failed <- fmt.Errorf("grpc server: %w", err)
		}
	}()
	if a.gateway != nil {
		go func() {
			if err := a.gateway.Serve(lis.gateway); !errors.Is(err, http.ErrServerClosed) {
				failed <- fmt.Errorf("gateway: %w", err)
			}
		}()
	}
}

// abort undoes a start that ended before anything but the side port
// served: it closes the other listeners and the gateway's (unused)
// connection and stops the side port.
func (a *App) abort(lis listeners) {
	_ = lis.grpc.Close()
	sctx, cancel := context.WithTimeout(context.Background(), a.c.Server.StopTimeout)
	defer cancel()
	if a.gateway != nil {
		_ = lis.gateway.Close()
		if err := a.gateway.Shutdown(sctx); err != nil {
			a.log.Errorf("gateway stop: %v", err)
		}
	}
	if err := a.http.Shutdown(sctx); err != nil {
		a.log.Errorf("http stop: %v", err)
	}
}

// stop leaves the pool before it stops serving. Clients with health
// checking drop the instance at NOT_SERVING, Consul watchers at deregister
// (or, under a scheduler, when its gRPC check sees NOT_SERVING);
// the drain delay gives the slowest of them time to notice. Then the
// long-lived streams are ended (health watchers have seen NOT_SERVING by
// now), the gateway stops taking HTTP calls and waits for those in flight,
// whose gRPC calls finish on a server that still serves, then closes its
// connection; then GracefulStop lets the in-flight unary calls finish.
func (a *App) stop(ins *registry.ServiceInstance) {
	a.probes.SetReady(false)
	a.health.Shutdown()

	if a.c.Registry.SelfRegister {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := a.reg.Deregister(dctx, ins); err != nil {
			a.log.Errorf("deregister %s: %v (Consul removes it after registry.consul.deregister_after)", ins.ID, err)
		}
		cancel()
	}
	if d := a.c.Server.DrainDelay; d > 0 {
		a.log.Infof("draining for %s", d)
		time.Sleep(d)
	}
	a.streams.End()

	sctx, cancel := context.WithTimeout(context.Background(), a.c.Server.StopTimeout)
	defer cancel()
	if a.gateway != nil {
		if err := a.gateway.Shutdown(sctx); err != nil {
			a.log.Errorf("gateway stop: %v", err)
		}
	}
	if err := a.grpc.Stop(sctx); err != nil {
		a.log.Errorf("grpc stop: %v", err)
	}
	if err := a.http.Shutdown(sctx); err != nil {
		a.log.Errorf("http stop: %v", err)
	}
	a.log.Info("stopped")
}

// listeners are the ports of one instance; gateway is nil when it is off.
type listeners struct{ grpc, http, gateway net.Listener }

func (l listeners) close() {
	for _, lis := range []net.Listener{l.grpc, l.http, l.gateway} {
		if lis != nil {
			_ = lis.Close()
		}
	}
}

// bind binds every port of the instance, each with listen's retry. It
// fails only when ctx ends first, and then closes what it had bound.
func (a *App) bind(ctx context.Context) (listeners, error) {
	var l listeners
	var err error
	if l.grpc, err = listen(ctx, a.log, "grpc", a.c.Server.GRPC.Addr); err != nil {
		return listeners{}, err
	}
	if l.http, err = listen(ctx, a.log, "http", a.c.Server.HTTP.Addr); err != nil {
		l.close()
		return listeners{}, err
	}
	if a.gateway != nil {
		if l.gateway, err = listen(ctx, a.log, "gateway", a.c.Server.Gateway.Addr); err != nil {
			l.close()
			return listeners{}, err
		}
	}
	return l, nil
}

// listen binds addr, retrying while the port is taken: a port still held by
// a previous instance is usually free a moment later, and a crash loop
// would only hide the message. It gives up only when ctx ends.
func listen(ctx context.Context, logger *log.Helper, name, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	backoff := 200 * time.Millisecond
	for {
		lis, err := lc.Listen(ctx, "tcp", addr)
		if err == nil {
			return lis, nil
		}
		logger.Errorf("listen %s on %s: %v; retrying in %s", name, addr, err, backoff)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// advertiseGRPC is the gRPC address registered for peers to dial: the
// configured server.grpc.advertise (an instance behind NAT, a port mapping
// or a proxy), else the bound one as advertised says.
func advertiseGRPC(configured string, bound net.Addr) string {
	if configured != "" {
		return configured
	}
	return advertised(bound)
}

// advertised is the address peers should dial. A wildcard bind is reachable
// on every interface, so advertise the first non-loopback one.
func advertised(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	port := fmt.Sprint(tcp.Port)
	ifaddrs, _ := net.InterfaceAddrs()
	for _, ia := range ifaddrs {
		if ipn, ok := ia.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return net.JoinHostPort(ipn.IP.String(), port)
		}
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// loopback is the address this process dials to reach its own listener:
// a wildcard bind answers on loopback too (Go's listeners are dual-stack),
// and loopback never leaves the host.
func loopback(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
}
