package telemetry_test

import (
	"context"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/leakcheck"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// Providers, exporters and gRPC connections all start goroutines; every
// test must leave none behind. The pinning test serves through the
// services' server chain, whose load shedding links aegis' CPU sampler.
// Kratos servers log their start and stop through Kratos' global logger,
// which would bury a failure's output.
func TestMain(m *testing.M) {
	log.SetLogger(log.NewStdLogger(io.Discard)) //nolint:forbidigo // silence Kratos' own lines in tests
	leakcheck.Main(m)
}

// testCtx is a context that ends with the test or after 10s.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var testInfo = telemetry.ResourceInfo{ServiceName: "user", ServiceVersion: "v0.0.1", InstanceID: "user-1234abcd"}

// otelVars are cleared in every test so the machine's environment cannot
// change the outcome; t.Setenv restores them afterwards.
var otelVars = []string{
	telemetry.EnvTracesExporter,
	telemetry.EnvOTLPEndpoint,
	telemetry.EnvOTLPTracesEndpoint,
	telemetry.EnvOTLPProtocol,
	telemetry.EnvOTLPTracesProtocol,
	telemetry.EnvTracesSampler,
	telemetry.EnvTracesSamplerArg,
	"OTEL_SEMCONV_STABILITY_OPT_IN",
	"OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_SERVICE_NAME",
}

func clearOTelEnv(t *testing.T) {
	t.Helper()
	for _, v := range otelVars {
		t.Setenv(v, "")
	}
}

// newTelemetry builds a Telemetry that records every ended span in memory
// and is shut down when the test ends.
func newTelemetry(t *testing.T, cfg telemetry.Config, opts ...telemetry.Option) (*telemetry.Telemetry, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tel, err := telemetry.New(testCtx(t), cfg, testInfo, append([]telemetry.Option{telemetry.WithLookup(os.LookupEnv)}, append(opts, telemetry.WithSpanProcessor(rec))...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tel, rec
}

// serve runs srv as the user service on a loopback port, instrumented by
// tel, with any further server options, and returns its address.
func serve(t *testing.T, tel *telemetry.Telemetry, srv userv1.UserServiceServer, opts ...grpc.ServerOption) string {
	t.Helper()
	var lc net.ListenConfig
	lis, err := lc.Listen(testCtx(t), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := grpc.NewServer(append([]grpc.ServerOption{tel.ServerInterceptor(), tel.ServerStreamInterceptor()}, opts...)...)
	userv1.RegisterUserServiceServer(s, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return lis.Addr().String()
}

// dial connects to addr with the given chain, outermost first, and tel's
// attempt spans innermost, as the services do.
func dial(t *testing.T, tel *telemetry.Telemetry, addr string, chain ...grpc.UnaryClientInterceptor) userv1.UserServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(append(chain, tel.AttemptSpan("user"))...),
		tel.ClientStreamInterceptor("user"),
	)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return userv1.NewUserServiceClient(cc)
}

// waitSpans waits until rec holds n ended spans. A server span ends after
// its reply is on the wire, so the client may return before it does.
func waitSpans(t *testing.T, rec *tracetest.SpanRecorder, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		spans := rec.Ended()
		if len(spans) >= n {
			if len(spans) > n {
				t.Fatalf("got %d spans, want %d:\n%s", len(spans), n, describe(spans))
			}
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d spans after 5s, want %d:\n%s", len(spans), n, describe(spans))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// describe lists spans one a line, for failure messages.
func describe(spans []sdktrace.ReadOnlySpan) string {
	var out string
	for _, s := range spans {
		out += s.SpanKind().String() + " " + s.Name() + " span=" + s.SpanContext().SpanID().String() +
			" parent=" + s.Parent().SpanID().String() + " scope=" + s.InstrumentationScope().Name + "\n"
	}
	return out
}

// attr returns the string form of a span attribute, "" when absent.
func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}
