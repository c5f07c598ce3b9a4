package telemetry_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/mtls"
	"github.com/rampart-go/rampart/internal/mtls/mtlstest"
	"github.com/rampart-go/rampart/internal/server"
	"github.com/rampart-go/rampart/internal/service"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// This file pins what the RPC instrumentation shows a user, so that a
// change of how it is produced (issue 16: Rampart's own interceptors in
// place of otelgrpc's stats handlers) is invisible in a trace backend and
// in Prometheus. It was recorded from the otelgrpc-based instrumentation
// and must pass unchanged after the change.
//
// Each scenario runs real calls through the constructors the services use
// (server.NewGRPCServer, server.NewDialer over middleware.NewClients) with
// a real SDK behind them, and renders, in a canonical text form:
//
//   - every ended span as a tree (parent and child, across the wire too):
//     name, kind, instrumentation scope, status, every attribute key and
//     value, events with their attributes, links;
//   - what each backend call received: the traceparent's trace, parent
//     span and sampled flag, the handler context's span, the baggage;
//   - every rpc.* instrument read with an in-memory reader: scope, name,
//     description, unit, kind, temporality, bucket boundaries, and each
//     series' attribute set and count;
//   - the rpc_* families of /metrics as Prometheus scrapes them: HELP,
//     TYPE, label sets and bucket bounds.
//
// Values that differ between runs are named instead: ports by the server
// that owns them, span and trace IDs by their place in the tree, retry
// backoffs (jittered) by their type. The rendering is compared with
// testdata/pin.golden, once per OTEL_SEMCONV_STABILITY_OPT_IN mode;
// go test -run TestPinnedTelemetry -update rewrites it.
var update = flag.Bool("update", false, "rewrite testdata/pin.golden from what the instrumentation emits now")

const goldenPath = "testdata/pin.golden"

// pinScenario is one situation a user sees: it sets up servers and
// clients in env and makes its calls.
type pinScenario struct {
	name string
	// sampler is the telemetry.sampler the scenario runs with; empty is the
	// services' default, parentbased_always_on.
	sampler string
	run     func(t *testing.T, env *pinEnv)
}

var pinScenarios = []pinScenario{
	{name: "success across two hops, with baggage", run: func(t *testing.T, env *pinEnv) {
		backend := env.serve("backend", &pinBackend{})
		front := env.serve("frontend", &pinFrontend{users: env.dial(backend)})
		bag, err := baggage.Parse("tenant=acme")
		if err != nil {
			t.Fatal(err)
		}
		ctx := baggage.ContextWithBaggage(testCtx(t), bag)
		if _, err := env.dial(front).GetUserProfile(ctx, &userv1.GetUserProfileRequest{Id: pinUserID}); err != nil {
			t.Fatalf("GetUserProfile: %v", err)
		}
	}},
	{name: "caller error NotFound", run: func(t *testing.T, env *pinEnv) {
		backend := env.serve("backend", &pinBackend{answers: []error{status.Error(codes.NotFound, "no such user")}})
		_, err := env.dial(backend).GetUser(testCtx(t), &userv1.GetUserRequest{Id: pinUserID})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("GetUser: %v, want NotFound", err)
		}
	}},
	{name: "server error Internal", run: func(t *testing.T, env *pinEnv) {
		backend := env.serve("backend", &pinBackend{answers: []error{status.Error(codes.Internal, "store broke")}})
		_, err := env.dial(backend).GetUser(testCtx(t), &userv1.GetUserRequest{Id: pinUserID})
		if status.Code(err) != codes.Internal {
			t.Fatalf("GetUser: %v, want Internal", err)
		}
	}},
	{name: "retried, two attempts", run: func(t *testing.T, env *pinEnv) {
		backend := env.serve("backend", &pinBackend{answers: []error{status.Error(codes.Unavailable, "first attempt refused")}})
		if _, err := env.dial(backend).GetUser(testCtx(t), &userv1.GetUserRequest{Id: pinUserID}); err != nil {
			t.Fatalf("GetUser: %v", err)
		}
	}},
	{name: "not sampled: the caller's parent is not sampled", run: func(t *testing.T, env *pinEnv) {
		backend := env.serve("backend", &pinBackend{})
		parent := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c},
			SpanID:  trace.SpanID{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31},
			Remote:  true,
		})
		env.traceNames[parent.TraceID()] = "caller's trace"
		ctx := trace.ContextWithRemoteSpanContext(testCtx(t), parent)
		if _, err := env.dial(backend).GetUser(ctx, &userv1.GetUserRequest{Id: pinUserID}); err != nil {
			t.Fatalf("GetUser: %v", err)
		}
	}},
	{name: "not sampled: a root call under parentbased_always_off", sampler: telemetry.SamplerParentBasedAlwaysOff, run: func(t *testing.T, env *pinEnv) {
		backend := env.serve("backend", &pinBackend{})
		front := env.serve("frontend", &pinFrontend{users: env.dial(backend)})
		if _, err := env.dial(front).GetUserProfile(testCtx(t), &userv1.GetUserProfileRequest{Id: pinUserID}); err != nil {
			t.Fatalf("GetUserProfile: %v", err)
		}
	}},
	{name: "streams: health watch, reflection through the client chain", run: func(t *testing.T, env *pinEnv) {
		backend := env.serve("backend", &pinBackend{})
		conn := env.conn(backend)
		ctx, cancel := context.WithCancel(testCtx(t))
		watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if st, recvErr := watch.Recv(); recvErr != nil || st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health watch: %v %v, want SERVING", st, recvErr)
		}
		cancel()

		refl, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		if _, err := refl.Recv(); err != nil {
			t.Fatalf("reflection: %v", err)
		}
		if err := refl.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := refl.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("reflection after CloseSend: %v, want EOF", err)
		}
	}},
	{name: "always_on: an unsampled parent's call is sampled", sampler: telemetry.SamplerAlwaysOn, run: func(t *testing.T, env *pinEnv) {
		backend := env.serve("backend", &pinBackend{})
		ctx := trace.ContextWithRemoteSpanContext(testCtx(t), env.callerParent(false, ""))
		if _, err := env.dial(backend).GetUser(ctx, &userv1.GetUserRequest{Id: pinUserID}); err != nil {
			t.Fatalf("GetUser: %v", err)
		}
	}},
	{name: "tracestate and baggage across two hops", run: func(t *testing.T, env *pinEnv) {
		backend := env.serve("backend", &pinBackend{})
		front := env.serve("frontend", &pinFrontend{users: env.dial(backend)})
		bag, err := baggage.Parse("tenant=acme,region=eu")
		if err != nil {
			t.Fatal(err)
		}
		ctx := baggage.ContextWithBaggage(trace.ContextWithRemoteSpanContext(testCtx(t), env.callerParent(true, "vendor=abc,other=x")), bag)
		if _, err := env.dial(front).GetUserProfile(ctx, &userv1.GetUserProfileRequest{Id: pinUserID}); err != nil {
			t.Fatalf("GetUserProfile: %v", err)
		}
	}},
	{name: "a handler that copies its traceparent into the outgoing metadata", run: func(t *testing.T, env *pinEnv) {
		backend := env.serve("backend", &pinBackend{})
		front := env.serve("frontend", &pinFrontend{users: env.dial(backend), forward: true})
		if _, err := env.dial(front).GetUserProfile(testCtx(t), &userv1.GetUserProfileRequest{Id: pinUserID}); err != nil {
			t.Fatalf("GetUserProfile: %v", err)
		}
	}},
	{name: "a Kratos error from the handler", run: func(t *testing.T, env *pinEnv) {
		backend := env.serve("backend", &pinBackend{answers: []error{kerrors.NotFound("USER_NOT_FOUND", "no user with that id")}})
		_, err := env.dial(backend).GetUser(testCtx(t), &userv1.GetUserRequest{Id: pinUserID})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("GetUser: %v, want NotFound", err)
		}
	}},
	{name: "mTLS: the server span names the calling service", run: func(t *testing.T, env *pinEnv) {
		ca := mtlstest.NewCA(t, "11111111-2222-3333-4444-555555555555.consul")
		addr := serve(t, env.tel, &pinBackend{}, grpc.Creds(credentials.NewTLS(mtls.ServerConfig(ca.Source(t, "user")))))
		env.name(addr, "backend")
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(mtls.ClientConfig(ca.Source(t, "order"), "user"))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		if _, err := userv1.NewUserServiceClient(cc).GetUser(testCtx(t), &userv1.GetUserRequest{Id: pinUserID}); err != nil {
			t.Fatal(err)
		}
	}},
}

const pinUserID = "0b9a5c1e-4f43-4c3e-9d55-6f1b1f3f5a10"

// TestPinnedTelemetry runs every scenario in every semantic-conventions
// mode and compares what it emits with the golden file. A server span may
// end, and a server metric be recorded, after the client has its reply, so
// each rendering is retried until it matches or 5 s have passed.
func TestPinnedTelemetry(t *testing.T) {
	golden := map[string]string{}
	if !*update {
		raw, err := os.ReadFile(goldenPath)
		if err != nil {
			t.Fatalf("%v (run with -update to record it)", err)
		}
		golden = parseGolden(string(raw))
	}
	var out strings.Builder
	for _, mode := range []string{"", "rpc/old", "rpc/dup"} {
		for _, sc := range pinScenarios {
			header := fmt.Sprintf("=== OTEL_SEMCONV_STABILITY_OPT_IN=%q: %s", mode, sc.name)
			t.Run(fmt.Sprintf("optin=%s/%s", mode, sc.name), func(t *testing.T) {
				clearOTelEnv(t)
				t.Setenv("OTEL_SEMCONV_STABILITY_OPT_IN", mode)
				env := newPinEnv(t, sc.sampler)
				sc.run(t, env)
				got := env.settle(t, golden[header])
				out.WriteString(header + "\n" + got + "\n")
				if *update {
					return
				}
				want, ok := golden[header]
				if !ok {
					t.Fatalf("%s has no section %q (run with -update)", goldenPath, header)
				}
				if got != want {
					t.Errorf("what the instrumentation emits differs from %s:\n%s", goldenPath, lineDiff(want, got))
				}
			})
		}
	}
	if *update && !t.Failed() {
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// parseGolden splits the golden file into its sections by header line.
func parseGolden(s string) map[string]string {
	sections := map[string]string{}
	var header string
	var body strings.Builder
	flush := func() {
		if header != "" {
			sections[header] = strings.TrimRight(body.String(), "\n")
		}
		body.Reset()
	}
	for line := range strings.SplitSeq(s, "\n") {
		if strings.HasPrefix(line, "=== ") {
			flush()
			header = line
			continue
		}
		body.WriteString(line + "\n")
	}
	flush()
	return sections
}

// lineDiff lists the lines only in want (-) and only in got (+), in order.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range w {
		if !slices.Contains(g, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	if b.Len() == 0 {
		return "(same lines, other order)\n--- want\n" + want + "\n--- got\n" + got
	}
	return b.String()
}

// pinEnv is one scenario's process: its telemetry, what it recorded, and
// the names of its servers.
type pinEnv struct {
	t      *testing.T
	tel    *telemetry.Telemetry
	rec    *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader

	mu         sync.Mutex
	ports      map[string]string // port -> server name
	backends   []*pinBackend
	traceNames map[trace.TraceID]string
}

var discardLogger = log.NewStdLogger(io.Discard)

func newPinEnv(t *testing.T, sampler string) *pinEnv {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	tel, rec := newTelemetry(t, telemetry.Config{Sampler: sampler}, telemetry.WithMetricReader(reader))
	return &pinEnv{t: t, tel: tel, rec: rec, reader: reader, ports: map[string]string{}, traceNames: map[trace.TraceID]string{}}
}

// callerParent is a remote parent from outside the process, sampled or
// not, with a tracestate; its trace is named "caller's trace".
func (e *pinEnv) callerParent(sampled bool, tracestate string) trace.SpanContext {
	e.t.Helper()
	ts, err := trace.ParseTraceState(tracestate)
	if err != nil {
		e.t.Fatal(err)
	}
	var flags trace.TraceFlags
	if sampled {
		flags = trace.FlagsSampled
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: flags,
		TraceState: ts,
		Remote:     true,
	})
	e.traceNames[sc.TraceID()] = "caller's trace"
	return sc
}

// name records that addr's port belongs to the server called name.
func (e *pinEnv) name(addr, name string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ports[port] = name
}

// serve runs impl as the user service the way the services serve it: the
// server chain with its defaults, the telemetry, health and streams.
func (e *pinEnv) serve(name string, impl userv1.UserServiceServer) string {
	t := e.t
	t.Helper()
	if b, ok := impl.(*pinBackend); ok {
		e.backends = append(e.backends, b)
	}
	c := conf.Default()
	inj, err := middleware.NewFaults(c.Server.Faults, e.tel.MeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	chain, err := middleware.NewServerChain(c.Server.Shedding, discardLogger, inj, e.tel.MeterProvider(), middleware.Authorization{})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewGRPCServer(c.Server.GRPC, chain, server.NewHealth(), e.tel, server.NewStreams(),
		service.API{Desc: &userv1.UserService_ServiceDesc, Impl: impl}, nil)
	var lc net.ListenConfig
	lis, err := lc.Listen(testCtx(t), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Bind(lis, nil)
	started := make(chan error, 1)
	go func() { started <- srv.Start(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
		if err := <-started; err != nil {
			t.Errorf("server %s: %v", name, err)
		}
	})
	e.name(lis.Addr().String(), name)
	return lis.Addr().String()
}

// conn dials addr as the order service dials user: the whole client chain
// for target "user", with its defaults.
func (e *pinEnv) conn(addr string) *grpc.ClientConn {
	t := e.t
	t.Helper()
	cfg := middleware.DefaultClientConfig()
	cfg.Target = addr
	conn, closeConn, err := server.NewDialer(nil, middleware.NewClients(middleware.ClientConfigs{"user": cfg}, discardLogger, e.tel), nil).Dial("user")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeConn)
	return conn
}

func (e *pinEnv) dial(addr string) userv1.UserServiceClient {
	return userv1.NewUserServiceClient(e.conn(addr))
}

// settle renders what the scenario emitted. When comparing, it retries
// until the rendering equals want or 5 s have passed; when recording, until
// it has not changed for half a second.
func (e *pinEnv) settle(t *testing.T, want string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	got, stableSince := e.render(t), time.Now()
	for time.Now().Before(deadline) {
		if !*update && got == want {
			return got
		}
		if *update && time.Since(stableSince) >= 500*time.Millisecond {
			return got
		}
		time.Sleep(20 * time.Millisecond)
		if next := e.render(t); next != got {
			got, stableSince = next, time.Now()
		}
	}
	return got
}

// render is the scenario's canonical text: spans, what the backends
// received, instruments, and Prometheus families.
func (e *pinEnv) render(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	labels := e.renderSpans(&b, e.rec.Ended())
	e.renderReceived(&b, labels)
	e.renderInstruments(t, &b)
	e.renderPrometheus(t, &b)
	return strings.TrimSuffix(b.String(), "\n")
}

// renderSpans writes the span trees and returns each span's label (S1,
// S2, … in tree order) by span ID.
func (e *pinEnv) renderSpans(b *strings.Builder, spans []sdktrace.ReadOnlySpan) map[trace.SpanID]string {
	labels := map[trace.SpanID]string{}
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s
	}
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	var roots []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if _, ok := byID[s.Parent().SpanID()]; ok && s.Parent().IsValid() {
			children[s.Parent().SpanID()] = append(children[s.Parent().SpanID()], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) }
	slices.SortStableFunc(roots, byStart)
	fmt.Fprintf(b, "spans: %d\n", len(spans))
	var walk func(s sdktrace.ReadOnlySpan, depth int)
	walk = func(s sdktrace.ReadOnlySpan, depth int) {
		label := "S" + strconv.Itoa(len(labels)+1)
		labels[s.SpanContext().SpanID()] = label
		indent := strings.Repeat("    ", depth)
		scope := s.InstrumentationScope()
		parent := "none"
		if p := s.Parent(); p.IsValid() {
			parent = "local"
			if p.IsRemote() {
				parent = "remote"
			}
		}
		fmt.Fprintf(b, "%s%s %s %q scope=%s@%s", indent, label, s.SpanKind(), s.Name(), scope.Name, scope.Version)
		if scope.SchemaURL != "" {
			fmt.Fprintf(b, " schema=%s", scope.SchemaURL)
		}
		fmt.Fprintf(b, " trace=%s parent=%s sampled=%t status=%s %q\n",
			e.traceName(s.SpanContext().TraceID()), parent, s.SpanContext().IsSampled(), s.Status().Code, s.Status().Description)
		for _, kv := range e.sortedAttrs(s.Attributes()) {
			fmt.Fprintf(b, "%s    attr %s\n", indent, kv)
		}
		for _, ev := range s.Events() {
			fmt.Fprintf(b, "%s    event %q %s\n", indent, ev.Name, strings.Join(e.sortedAttrs(ev.Attributes), " "))
		}
		for range s.Links() {
			fmt.Fprintf(b, "%s    link\n", indent)
		}
		if n := s.DroppedAttributes() + s.DroppedEvents() + s.DroppedLinks(); n > 0 {
			fmt.Fprintf(b, "%s    dropped %d\n", indent, n)
		}
		kids := children[s.SpanContext().SpanID()]
		slices.SortStableFunc(kids, byStart)
		for _, c := range kids {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	return labels
}

// traceName names trace IDs in order of first appearance.
func (e *pinEnv) traceName(id trace.TraceID) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if n, ok := e.traceNames[id]; ok {
		return strconv.Quote(n)
	}
	n := "T" + strconv.Itoa(len(e.traceNames)+1)
	e.traceNames[id] = n
	return strconv.Quote(n)
}

// sortedAttrs renders attributes as key=TYPE:value, sorted, with the
// values that change between runs named.
func (e *pinEnv) sortedAttrs(kvs []attribute.KeyValue) []string {
	out := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, string(kv.Key)+"="+kv.Value.Type().String()+":"+e.value(kv))
	}
	slices.Sort(out)
	return out
}

func (e *pinEnv) value(kv attribute.KeyValue) string {
	switch kv.Key {
	case "server.port":
		e.mu.Lock()
		defer e.mu.Unlock()
		if n, ok := e.ports[kv.Value.String()]; ok {
			return "<port of " + n + ">"
		}
		return "<unknown port>"
	case "rampart.retry.backoff_ms":
		return "<jittered>"
	}
	return strconv.Quote(kv.Value.String())
}

// renderReceived writes what each backend call saw of its caller.
func (e *pinEnv) renderReceived(b *strings.Builder, labels map[trace.SpanID]string) {
	name := func(id trace.SpanID) string {
		if l, ok := labels[id]; ok {
			return l
		}
		return "unrecorded"
	}
	for i, be := range e.backends {
		for j, r := range be.received() {
			fmt.Fprintf(b, "backend %d call %d: traceparent values=%d", i+1, j+1, len(r.traceparents))
			if len(r.traceparents) == 1 {
				if sc, ok := parseTraceparent(r.traceparents[0]); ok {
					fmt.Fprintf(b, " trace=%s parent=%s sampled=%t", e.traceName(sc.TraceID()), name(sc.SpanID()), sc.IsSampled())
				} else {
					fmt.Fprintf(b, " unparsable %q", r.traceparents[0])
				}
			}
			fmt.Fprintf(b, " tracestate=%q baggage-header=%t; handler span: trace=%s %s sampled=%t; baggage tenant=%q\n",
				r.tracestate, r.baggageHeader, e.traceName(r.span.TraceID()), recordedOr(name(r.span.SpanID()), r.span), r.span.IsSampled(), r.tenant)
		}
	}
}

// recordedOr names the handler's span when it was recorded; an unsampled
// handler's span ID is not pinned (nothing shows it but log lines).
func recordedOr(label string, sc trace.SpanContext) string {
	if label != "unrecorded" {
		return label
	}
	if sc.IsValid() {
		return "unrecorded"
	}
	return "none"
}

// parseTraceparent reads a W3C traceparent with the SDK's propagator.
func parseTraceparent(h string) (trace.SpanContext, bool) {
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": h})
	sc := trace.SpanContextFromContext(ctx)
	return sc, sc.IsValid()
}

// renderInstruments writes every rpc.* instrument the in-memory reader
// collects.
func (e *pinEnv) renderInstruments(t *testing.T, b *strings.Builder) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(testCtx(t), &rm); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if !strings.HasPrefix(m.Name, "rpc.") {
				continue
			}
			head := fmt.Sprintf("metric %s scope=%s@%s schema=%s desc=%q unit=%q", m.Name, sm.Scope.Name, sm.Scope.Version, sm.Scope.SchemaURL, m.Description, m.Unit)
			var points []string
			switch d := m.Data.(type) {
			case metricdata.Histogram[float64]:
				head += fmt.Sprintf(" histogram[float64] %s", d.Temporality)
				for _, p := range d.DataPoints {
					points = append(points, fmt.Sprintf("    {%s} count=%d bounds=%v", strings.Join(e.sortedAttrs(p.Attributes.ToSlice()), " "), p.Count, p.Bounds))
				}
			default:
				head += fmt.Sprintf(" %T", m.Data)
			}
			slices.Sort(points)
			lines = append(lines, head+"\n"+strings.Join(points, "\n"))
		}
	}
	slices.Sort(lines)
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
}

// renderPrometheus writes the rpc_* families of /metrics: HELP and TYPE as
// they are, one line per series with its labels (buckets folded into their
// le bounds) and its count.
func (e *pinEnv) renderPrometheus(t *testing.T, b *strings.Builder) {
	t.Helper()
	rec := httptest.NewRecorder()
	e.tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequestWithContext(testCtx(t), http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	type series struct {
		les   []string
		count string
	}
	var meta []string
	all := map[string]*series{}
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "# HELP rpc_") || strings.HasPrefix(line, "# TYPE rpc_") {
			meta = append(meta, line)
			continue
		}
		if !strings.HasPrefix(line, "rpc_") {
			continue
		}
		nameLabels, value, _ := strings.Cut(line, " ")
		name, labels, _ := strings.Cut(nameLabels, "{")
		labels = strings.TrimSuffix(labels, "}")
		var le string
		var kept []string
		for _, l := range splitLabels(labels) {
			if v, ok := strings.CutPrefix(l, "le="); ok {
				le = strings.Trim(v, `"`)
				continue
			}
			kept = append(kept, l)
		}
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
		key := base + "{" + strings.Join(kept, ",") + "}"
		s := all[key]
		if s == nil {
			s = &series{}
			all[key] = s
		}
		switch {
		case strings.HasSuffix(name, "_bucket"):
			s.les = append(s.les, le)
		case strings.HasSuffix(name, "_count"):
			s.count = value
		}
	}
	for _, m := range meta {
		b.WriteString("prom " + m + "\n")
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(b, "prom %s count=%s le=%s\n", e.promPorts(k), all[k].count, strings.Join(all[k].les, ","))
	}
}

// splitLabels splits a Prometheus label list at the commas between labels.
func splitLabels(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && quoted && i+1 < len(s):
			cur.WriteByte(c)
			i++
			cur.WriteByte(s[i])
			continue
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			out = append(out, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(c)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// promPorts names the ports in a series key, should one carry a port.
func (e *pinEnv) promPorts(k string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for port, name := range e.ports {
		k = strings.ReplaceAll(k, `"`+port+`"`, `"<port of `+name+`>"`)
	}
	return k
}

// pinBackend is a user service whose GetUser answers with answers in turn
// (nil meaning success), then succeeds, and records what each call saw of
// its caller.
type pinBackend struct {
	userv1.UnimplementedUserServiceServer

	answers []error

	mu    sync.Mutex
	calls []pinReceived
}

type pinReceived struct {
	traceparents  []string
	tracestate    string
	baggageHeader bool
	span          trace.SpanContext
	tenant        string
}

func (b *pinBackend) GetUser(ctx context.Context, req *userv1.GetUserRequest) (*userv1.GetUserReply, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	b.mu.Lock()
	n := len(b.calls)
	b.calls = append(b.calls, pinReceived{
		traceparents:  md.Get("traceparent"),
		tracestate:    strings.Join(md.Get("tracestate"), ","),
		baggageHeader: len(md.Get("baggage")) > 0,
		span:          trace.SpanContextFromContext(ctx),
		tenant:        baggage.FromContext(ctx).Member("tenant").Value(),
	})
	b.mu.Unlock()
	if n < len(b.answers) && b.answers[n] != nil {
		return nil, b.answers[n]
	}
	return &userv1.GetUserReply{User: &userv1.User{Id: req.GetId(), Name: "Ada"}}, nil
}

func (b *pinBackend) received() []pinReceived {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// pinFrontend serves GetUserProfile by calling the backend's GetUser with
// the handler's context, as a Rampart handler calls another service. With
// forward it first copies the traceparent it received into the outgoing
// metadata, as hand-written propagation does.
type pinFrontend struct {
	userv1.UnimplementedUserServiceServer

	users   userv1.UserServiceClient
	forward bool
}

func (f *pinFrontend) GetUserProfile(ctx context.Context, req *userv1.GetUserProfileRequest) (*userv1.GetUserProfileReply, error) {
	if f.forward {
		if tp := metadata.ValueFromIncomingContext(ctx, "traceparent"); len(tp) > 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", tp[0])
		}
	}
	reply, err := f.users.GetUser(ctx, &userv1.GetUserRequest{Id: req.GetId()})
	if err != nil {
		return nil, err
	}
	return &userv1.GetUserProfileReply{User: reply.GetUser()}, nil
}
