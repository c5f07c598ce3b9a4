package shedding_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kratos/aegis/ratelimit"
	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/middleware"
	"github.com/go-kratos/kratos/v2/transport"
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/middleware/shedding"
	"github.com/rampart-go/rampart/internal/rpc"
)

// IgnoreCurrent: importing aegis' BBR starts its CPU sampler goroutines at
// package init; they live as long as the process.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

const healthCheck = "/grpc.health.v1.Health/Check"

// limiter is a ratelimit.Limiter that refuses while refuse is set and
// counts the done calls of the requests it let through.
type limiter struct {
	refuse atomic.Bool
	done   atomic.Int64
}

func (l *limiter) Allow() (ratelimit.DoneFunc, error) {
	if l.refuse.Load() {
		return nil, ratelimit.ErrLimitExceed
	}
	return func(ratelimit.DoneInfo) { l.done.Add(1) }, nil
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newMeter(t *testing.T) (*sdkmetric.MeterProvider, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mp.Shutdown(ctx)
	})
	return mp, reader
}

// startServer runs a Kratos gRPC server on a free loopback port with mw,
// and returns a client connection to it. The server's built-in health
// service is the handler, so no test protos are needed.
func startServer(t *testing.T, mw middleware.Middleware) *grpc.ClientConn {
	t.Helper()
	var lc net.ListenConfig
	lis, err := lc.Listen(testContext(t), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := kgrpc.NewServer(kgrpc.Listener(lis), kgrpc.Middleware(mw))
	served := make(chan error, 1)
	go func() { served <- srv.Start(context.Background()) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve: %v", err)
		}
	})
	return conn
}

func TestRefusedRequestGetsResourceExhaustedAndPushback(t *testing.T) {
	ctx := testContext(t)
	mp, reader := newMeter(t)
	lim := &limiter{}
	lim.refuse.Store(true)
	conn := startServer(t, shedding.Server(withPushback(250*time.Millisecond),
		shedding.WithLimiter(lim),
		shedding.WithMeterProvider(mp),
	))
	client := grpc_health_v1.NewHealthClient(conn)

	var trailer metadata.MD
	_, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{}, grpc.Trailer(&trailer))
	if got := status.Code(err); got != codes.ResourceExhausted {
		t.Fatalf("code = %v, want ResourceExhausted (err %v)", got, err)
	}
	if got := kerrors.Reason(err); got != rpc.ReasonLoadShed {
		t.Fatalf("reason = %q, want %q", got, rpc.ReasonLoadShed)
	}
	if got := trailer.Get(rpc.PushbackTrailer); len(got) != 1 || got[0] != "250" {
		t.Fatalf("trailer %s = %q, want [250]", rpc.PushbackTrailer, got)
	}
	if n := shedCount(t, reader, healthCheck); n != 1 {
		t.Fatalf("%s{method=%s} = %d, want 1", shedding.MetricShed, healthCheck, n)
	}

	// Once the limiter allows again the handler answers, the limiter hears
	// the request is done, and no pushback is sent.
	lim.refuse.Store(false)
	trailer = nil
	if _, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{}, grpc.Trailer(&trailer)); err != nil {
		t.Fatalf("allowed call failed: %v", err)
	}
	if got := trailer.Get(rpc.PushbackTrailer); len(got) != 0 {
		t.Fatalf("pushback %q sent on an allowed call", got)
	}
	if n := lim.done.Load(); n != 1 {
		t.Fatalf("done called %d times, want 1", n)
	}
	if n := shedCount(t, reader, healthCheck); n != 1 {
		t.Fatalf("%s = %d after an allowed call, want still 1", shedding.MetricShed, n)
	}
}

// TestRefusalWithoutStream covers the middleware outside a gRPC server,
// where SetTrailer has no stream to write to: still a clean refusal.
func TestRefusalWithoutStream(t *testing.T) {
	mp, reader := newMeter(t)
	lim := &limiter{}
	lim.refuse.Store(true)
	called := false
	h := shedding.Server(shedding.DefaultConfig(), shedding.WithLimiter(lim), shedding.WithMeterProvider(mp))(
		func(context.Context, any) (any, error) { called = true; return "ok", nil })

	_, err := h(testContext(t), nil)
	if called {
		t.Fatal("handler ran for a shed request")
	}
	if status.Code(err) != codes.ResourceExhausted || kerrors.Reason(err) != rpc.ReasonLoadShed {
		t.Fatalf("err = %v, want ResourceExhausted/%s", err, rpc.ReasonLoadShed)
	}
	if n := shedCount(t, reader, "unknown"); n != 1 {
		t.Fatalf("%s{method=unknown} = %d, want 1", shedding.MetricShed, n)
	}
}

func TestDoneCalledEvenWhenHandlerPanics(t *testing.T) {
	lim := &limiter{}
	h := shedding.Server(shedding.DefaultConfig(), shedding.WithLimiter(lim))(func(context.Context, any) (any, error) { panic("bug") })
	func() {
		defer func() { _ = recover() }()
		_, _ = h(testContext(t), nil)
	}()
	if n := lim.done.Load(); n != 1 {
		t.Fatalf("done called %d times after a panic, want 1", n)
	}
}

// TestRealBBRShedsNothingWithoutLoad runs the real aegis limiter. BBR only
// sheds while CPU is above the threshold (an average that starts at 0 when
// the process starts and rises slowly) and more than one request is in
// flight beyond measured capacity, so light traffic must all pass.
func TestRealBBRShedsNothingWithoutLoad(t *testing.T) {
	ctx := transport.NewServerContext(testContext(t), fakeTransport{})
	mp, reader := newMeter(t)
	h := shedding.Server(shedding.DefaultConfig(), shedding.WithMeterProvider(mp))(func(context.Context, any) (any, error) {
		time.Sleep(100 * time.Microsecond)
		return "ok", nil
	})
	const workers, calls = 4, 100
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				if _, err := h(ctx, nil); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d calls shed without load", n, workers*calls)
	}
	if n := shedCount(t, reader, healthCheck); n != 0 {
		t.Fatalf("%s = %d, want 0", shedding.MetricShed, n)
	}
}

type fakeTransport struct{}

func (fakeTransport) Kind() transport.Kind            { return transport.KindGRPC }
func (fakeTransport) Endpoint() string                { return "grpc://127.0.0.1:0" }
func (fakeTransport) Operation() string               { return healthCheck }
func (fakeTransport) RequestHeader() transport.Header { return nil }
func (fakeTransport) ReplyHeader() transport.Header   { return nil }

func shedCount(t *testing.T, r *sdkmetric.ManualReader, method string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(testContext(t), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || m.Name != shedding.MetricShed {
				continue
			}
			for _, dp := range sum.DataPoints {
				if v, ok := dp.Attributes.Value("method"); ok && v.AsString() == method {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// BenchmarkServerAllowed is the cost of the real BBR limiter on a request it
// lets through, for the chain's allocation budget.
func BenchmarkServerAllowed(b *testing.B) {
	ctx := transport.NewServerContext(context.Background(), fakeTransport{})
	h := shedding.Server(shedding.DefaultConfig())(func(context.Context, any) (any, error) { return nil, nil })
	b.ReportAllocs()
	for b.Loop() {
		_, _ = h(ctx, nil)
	}
}

// withPushback is the default config with pushback d.
func withPushback(d time.Duration) shedding.Config {
	c := shedding.DefaultConfig()
	c.Pushback = d
	return c
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*shedding.Config)
		want string
	}{
		{"defaults", func(*shedding.Config) {}, ""},
		{"disabled is not checked", func(c *shedding.Config) { *c = shedding.Config{} }, ""},
		{"threshold", func(c *shedding.Config) { c.CPUThreshold = 0 }, "cpu_threshold: must be in (0, 1000] per mille, got 0"},
		{"window", func(c *shedding.Config) { c.Window = 0 }, "window: must be > 0"},
		{"bucket", func(c *shedding.Config) { c.Bucket = -1 }, "bucket: must be > 0"},
		{"too many buckets", func(c *shedding.Config) { c.Window, c.Bucket = 50, 100 }, "window: 50ns is too short for 100 buckets"},
		{"pushback", func(c *shedding.Config) { c.Pushback = -time.Millisecond }, "pushback: must be >= 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := shedding.DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}
