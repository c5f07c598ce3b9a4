package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/registry"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/leakcheck"
	"github.com/rampart-go/rampart/internal/server"
	"github.com/rampart-go/rampart/internal/service"
	"github.com/rampart-go/rampart/internal/telemetry"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// recorder is a Registrar that notes what the instance looked like from
// outside at the moment it was deregistered.
type recorder struct {
	registered   chan *registry.ServiceInstance
	mu           sync.Mutex
	atDeregister struct {
		when       time.Time
		health     healthpb.HealthCheckResponse_ServingStatus
		readyz     int
		grpcServes bool
	}
	check func(ins *registry.ServiceInstance) (healthpb.HealthCheckResponse_ServingStatus, int, bool)
}

func (r *recorder) Register(_ context.Context, ins *registry.ServiceInstance) error {
	r.registered <- ins
	return nil
}

func (r *recorder) Deregister(_ context.Context, ins *registry.ServiceInstance) error {
	st, code, serves := r.check(ins)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.atDeregister.when = time.Now()
	r.atDeregister.health, r.atDeregister.readyz, r.atDeregister.grpcServes = st, code, serves
	return nil
}

// newApp builds an App as the services do, around a bare gRPC server with
// only the health service and a real telemetry without exporter.
func newApp(ctx context.Context, t *testing.T, c *conf.Bootstrap, reg registry.Registrar) *server.App {
	t.Helper()
	return newAppServing(ctx, t, c, reg, nil)
}

// newAppServing is newApp whose gRPC server serves orders too, with the
// gateway in front of it unless server.gateway.addr is empty; a nil orders
// serves no API and no HTTP route.
func newAppServing(ctx context.Context, t *testing.T, c *conf.Bootstrap, reg registry.Registrar, orders orderv1.OrderServiceServer) *server.App {
	t.Helper()
	hs := health.NewServer()
	streams := server.NewStreams()
	api := service.API{Gateway: func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error { return nil }}
	if orders != nil {
		api = service.API{Desc: &orderv1.OrderService_ServiceDesc, Impl: orders, Gateway: orderv1.RegisterOrderServiceHandler}
	}
	grpcSrv := server.NewGRPCServer(c.Server.GRPC, nil, hs, nil, streams, api, nil)
	gw := server.NewGateway(c.Server.Gateway, api, log.NewStdLogger(io.Discard))
	probes := server.NewProbes()
	tel, err := telemetry.New(ctx, telemetry.Config{TracesExporter: "none"},
		telemetry.ResourceInfo{ServiceName: c.Service.Name, ServiceVersion: "dev", InstanceID: "app-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return server.NewApp(c, server.NewInstance(c.Service), log.NewStdLogger(&strings.Builder{}), grpcSrv,
		server.NewHTTPServer(c.Server.Faults, probes, nil, tel), gw, reg, hs, probes, streams, nil)
}

// TestShutdownOrder checks the order that loses no call: by the time the
// instance deregisters it already reports NOT_SERVING and not ready but
// still serves gRPC, and it keeps serving for the drain delay after that.
func TestShutdownOrder(t *testing.T) {
	const drain = 400 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	c := conf.Default()
	c.Service.Name = "user"
	c.Server.DrainDelay = drain
	rec := &recorder{registered: make(chan *registry.ServiceInstance, 1)}
	app := newApp(ctx, t, c, rec)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()

	var ins *registry.ServiceInstance
	select {
	case ins = <-rec.registered:
	case <-ctx.Done():
		t.Fatal("never registered")
	}
	u, err := url.Parse(ins.Endpoints[0])
	if err != nil || u.Scheme != "grpc" || u.Query().Get("isSecure") != "false" {
		t.Fatalf("endpoint %q is not grpc://host:port?isSecure=false", ins.Endpoints[0])
	}
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	hc := healthpb.NewHealthClient(conn)
	readyURL := "http://" + ins.Metadata["http"] + "/readyz"
	rec.check = func(*registry.ServiceInstance) (healthpb.HealthCheckResponse_ServingStatus, int, bool) {
		resp, checkErr := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		return resp.GetStatus(), httpStatus(ctx, t, readyURL), checkErr == nil
	}

	if st, code, serves := rec.check(ins); st != healthpb.HealthCheckResponse_SERVING || code != http.StatusOK || !serves {
		t.Fatalf("while running: health=%v readyz=%d serves=%v", st, code, serves)
	}
	stop()
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatal("Run did not return after its context ended")
	}
	returned := time.Now()
	if err != nil {
		t.Fatalf("Run = %v, want nil on a requested stop", err)
	}
	rec.mu.Lock()
	at := rec.atDeregister
	rec.mu.Unlock()
	if at.health != healthpb.HealthCheckResponse_NOT_SERVING || at.readyz != http.StatusServiceUnavailable || !at.grpcServes {
		t.Fatalf("at deregister: health=%v readyz=%d grpc serves=%v; want NOT_SERVING, 503, still serving",
			at.health, at.readyz, at.grpcServes)
	}
	if gap := returned.Sub(at.when); gap < drain {
		t.Fatalf("stopped %s after deregistering, want at least the %s drain", gap, drain)
	}
}

// TestOpenWatchDoesNotForceTheStop: a client keeps grpc.health.v1 Watch
// open, as client-side health checking and Envoy do. On stop it sees
// NOT_SERVING, then its stream ends, and the stop stays graceful: it does
// not wait out server.stop_timeout to force the server down.
func TestOpenWatchDoesNotForceTheStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := conf.Default()
	c.Service.Name = "user"
	c.Server.DrainDelay = 300 * time.Millisecond
	c.Server.StopTimeout = 10 * time.Second
	rec := &recorder{registered: make(chan *registry.ServiceInstance, 1), check: func(*registry.ServiceInstance) (healthpb.HealthCheckResponse_ServingStatus, int, bool) {
		return 0, 0, true
	}}
	app := newApp(ctx, t, c, rec)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	ins := <-rec.registered
	u, err := url.Parse(ins.Endpoints[0])
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch answer %v, %v; want SERVING", first, err)
	}

	stopped := time.Now()
	stop()
	if next, err := watch.Recv(); err != nil || next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch answer after stop %v, %v; want NOT_SERVING before the stream ends", next, err)
	}
	if _, err := watch.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("Watch after the drain: %v, want the stream ended (Canceled)", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if took := time.Since(stopped); took >= c.Server.StopTimeout {
		t.Fatalf("stop took %s: GracefulStop waited for the Watch until stop_timeout (%s) forced it", took, c.Server.StopTimeout)
	}
}

func httpStatus(ctx context.Context, t *testing.T, url string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// counter is a Registrar that only counts calls.
type counter struct {
	mu                   sync.Mutex
	register, deregister int
}

func (c *counter) Register(context.Context, *registry.ServiceInstance) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.register++
	return nil
}

func (c *counter) Deregister(context.Context, *registry.ServiceInstance) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deregister++
	return nil
}

// TestSchedulerOwnsRegistration runs an instance with
// registry.self_register false, as under a Nomad job whose service block
// registers it: the App must never touch the registrar, yet still go
// NOT_SERVING and unready first on stop, and keep serving for the drain.
func TestSchedulerOwnsRegistration(t *testing.T) {
	const drain = 400 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	c := conf.Default()
	c.Service.Name = "user"
	c.Registry.SelfRegister = false
	c.Server.DrainDelay = drain
	c.Server.GRPC.Addr = freeAddr(t)
	c.Server.HTTP.Addr = freeAddr(t)
	reg := &counter{}
	app := newApp(ctx, t, c, reg)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()

	readyURL := "http://" + c.Server.HTTP.Addr + "/readyz"
	for httpStatus(ctx, t, readyURL) != http.StatusOK {
		select {
		case <-ctx.Done():
			t.Fatal("never became ready")
		case <-time.After(20 * time.Millisecond):
		}
	}
	conn, err := grpc.NewClient(c.Server.GRPC.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	hc := healthpb.NewHealthClient(conn)
	if resp, checkErr := hc.Check(ctx, &healthpb.HealthCheckRequest{}); checkErr != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("while running: health=%v err=%v, want SERVING", resp.GetStatus(), checkErr)
	}

	stop()
	stopped := time.Now()
	// Within the drain the instance reports NOT_SERVING and unready (what
	// the scheduler's gRPC check and the load balancers see) but still serves.
	var sawDraining bool
	for time.Since(stopped) < drain/2 && !sawDraining {
		resp, checkErr := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		sawDraining = checkErr == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING &&
			httpStatus(ctx, t, readyURL) == http.StatusServiceUnavailable
		time.Sleep(10 * time.Millisecond)
	}
	if !sawDraining {
		t.Fatal("after the stop request: never NOT_SERVING + /readyz 503 while still answering gRPC")
	}
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatal("Run did not return after its context ended")
	}
	if err != nil {
		t.Fatalf("Run = %v, want nil on a requested stop", err)
	}
	if took := time.Since(stopped); took < drain {
		t.Fatalf("stopped %s after the request, want at least the %s drain", took, drain)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if reg.register != 0 || reg.deregister != 0 {
		t.Fatalf("registrar called: %d Register, %d Deregister; want none when the scheduler owns registration",
			reg.register, reg.deregister)
	}
}

// freeAddr returns a loopback host:port that nothing listened on a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}
