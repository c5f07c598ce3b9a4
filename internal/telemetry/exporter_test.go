package telemetry_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/rampart-go/rampart/internal/telemetry"
	"github.com/rampart-go/rampart/internal/telemetry/otlptest"
)

// syncBuffer is a bytes.Buffer safe to read while the exporter writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newUnmanaged builds a Telemetry the test shuts down itself, to observe
// what Shutdown does.
func newUnmanaged(t *testing.T, cfg telemetry.Config, opts ...telemetry.Option) *telemetry.Telemetry {
	t.Helper()
	tel, err := telemetry.New(testCtx(t), cfg, testInfo, append(opts, telemetry.WithLookup(os.LookupEnv))...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tel
}

// Spans wait in the batch processor (5s by default); Shutdown must export
// them before it returns.
func TestShutdownFlushesBatch(t *testing.T) {
	clearOTelEnv(t)
	var out syncBuffer
	tel := newUnmanaged(t, telemetry.Config{TracesExporter: "stdout"}, telemetry.WithTraceWriter(&out))

	_, span := tel.TracerProvider().Tracer("test").Start(testCtx(t), "flushed-on-shutdown")
	span.End()
	if got := out.String(); got != "" {
		t.Fatalf("exported before Shutdown, the batch timeout is too short to test: %s", got)
	}
	if err := tel.Shutdown(testCtx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	got := out.String()
	for _, want := range []string{`"Name":"flushed-on-shutdown"`, span.SpanContext().TraceID().String(), `"Value":"user-1234abcd"`} {
		if !strings.Contains(got, want) {
			t.Errorf("stdout export lacks %s:\n%s", want, got)
		}
	}
}

// The OTLP exporter reaches a collector named by the standard variables
// or by the file, over either protocol, and sends the resource along.
func TestOTLPExport(t *testing.T) {
	tests := []struct {
		name     string
		protocol string
		viaEnv   bool
	}{
		{name: "grpc from variables", protocol: "grpc", viaEnv: true},
		{name: "grpc from config", protocol: "grpc"},
		{name: "http from variables", protocol: "http/protobuf", viaEnv: true},
		{name: "http from config", protocol: "http/protobuf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTelEnv(t)
			var endpoint string
			var received func(context.Context) ([]otlptest.Span, error)
			if tt.protocol == "grpc" {
				rcv := otlptest.Start(t)
				endpoint = rcv.Endpoint()
				received = func(ctx context.Context) ([]otlptest.Span, error) {
					return rcv.WaitFor(ctx, func(s []otlptest.Span) bool { return len(s) > 0 })
				}
			} else {
				rcv := startHTTPReceiver(t)
				endpoint = rcv.url
				received = func(context.Context) ([]otlptest.Span, error) { return rcv.spans(), nil }
			}
			var cfg telemetry.Config
			if tt.viaEnv {
				t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
				t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tt.protocol)
			} else {
				cfg = telemetry.Config{OTLPEndpoint: endpoint, OTLPProtocol: tt.protocol}
			}
			tel := newUnmanaged(t, cfg)
			if got := tel.Settings().TracesExporter; got != "otlp" {
				t.Fatalf("exporter %q, want otlp", got)
			}

			_, span := tel.TracerProvider().Tracer("test").Start(testCtx(t), "exported")
			span.End()
			if err := tel.Shutdown(testCtx(t)); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}

			spans, err := received(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if len(spans) != 1 {
				t.Fatalf("received %d spans, want 1", len(spans))
			}
			got := spans[0]
			if got.GetName() != "exported" || got.TraceID() != span.SpanContext().TraceID().String() {
				t.Errorf("received %s in trace %s, want exported in %s", got.GetName(), got.TraceID(), span.SpanContext().TraceID())
			}
			for key, want := range map[string]string{
				"service.name":        "user",
				"service.version":     "v0.0.1",
				"service.instance.id": "user-1234abcd",
			} {
				if v := got.ResourceAttr(key); v != want {
					t.Errorf("resource %s = %q, want %q", key, v, want)
				}
			}
			if got.ServiceName != "user" {
				t.Errorf("ServiceName = %q, want user", got.ServiceName)
			}
		})
	}
}

// httpReceiver is an OTLP/HTTP trace endpoint that accepts protobuf on
// /v1/traces only, so a wrong path fails the test.
type httpReceiver struct {
	url string

	mu   sync.Mutex
	reqs []*collectortracepb.ExportTraceServiceRequest
}

func startHTTPReceiver(t *testing.T) *httpReceiver {
	t.Helper()
	r := &httpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/traces" {
			t.Errorf("export to %s, want /v1/traces", req.URL.Path)
			http.NotFound(w, req)
			return
		}
		body, err := io.ReadAll(req.Body)
		var msg collectortracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &msg)
		}
		if err != nil {
			t.Errorf("read export: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.reqs = append(r.reqs, &msg)
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// spans returns the spans received so far.
func (r *httpReceiver) spans() []otlptest.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var spans []otlptest.Span
	for _, req := range r.reqs {
		spans = append(spans, otlptest.Flatten(req)...)
	}
	return spans
}
