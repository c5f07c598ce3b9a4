package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/registry"
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/leakcheck"
	"github.com/rampart-go/rampart/internal/server"
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
	hs := health.NewServer()
	grpcSrv := kgrpc.NewServer(kgrpc.CustomHealth())
	healthpb.RegisterHealthServer(grpcSrv, hs)
	probes := server.NewProbes()
	tel, err := telemetry.New(ctx, telemetry.Config{TracesExporter: "none"}, telemetry.ResourceInfo{ServiceName: "user", ServiceVersion: "dev", InstanceID: "app-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	rec := &recorder{registered: make(chan *registry.ServiceInstance, 1)}
	app := server.NewApp(c, server.NewInstance(c), log.NewStdLogger(&strings.Builder{}), grpcSrv,
		server.NewHTTPServer(c, probes, nil, tel), rec, hs, probes)

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
