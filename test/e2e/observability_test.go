package e2e

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	"github.com/rampart-go/rampart/cmd/devstack/demo"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/middleware/faults"
	"github.com/rampart-go/rampart/internal/telemetry/otlptest"
)

// traceEnv points every instance at the in-test OTLP receiver and makes
// the batch processor export quickly.
func traceEnv(rcv *otlptest.Receiver) []string {
	return []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.Endpoint(),
		"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_BSP_SCHEDULE_DELAY=100",
	}
}

// spanIndex answers questions about the spans of received traces.
type spanIndex []otlptest.Span

func (x spanIndex) children(parent otlptest.Span) spanIndex {
	var out spanIndex
	for _, s := range x {
		if s.TraceID() == parent.TraceID() && s.ParentSpanID() == parent.SpanID() {
			out = append(out, s)
		}
	}
	return out
}

func (x spanIndex) find(service string, kind tracepb.Span_SpanKind, name string) spanIndex {
	var out spanIndex
	for _, s := range x {
		if s.ServiceName == service && s.GetKind() == kind && s.GetName() == name {
			out = append(out, s)
		}
	}
	return out
}

// hop is one server -> logical client span -> attempt spans -> peer server
// spans path of a trace.
type hop struct {
	server, logical otlptest.Span
	attempts        spanIndex
	peers           spanIndex // the peer's server spans, one per attempt that reached it
}

// hopFrom follows a server span of `from` to its outgoing call to `to`.
func (x spanIndex) hopFrom(server otlptest.Span, to string) (hop, error) {
	h := hop{server: server}
	var logical spanIndex
	for _, c := range x.children(server) {
		if c.GetKind() == tracepb.Span_SPAN_KIND_CLIENT && c.Attr("rampart.target") == to {
			logical = append(logical, c)
		}
	}
	if len(logical) != 1 {
		return h, fmt.Errorf("%s server span %s has %d logical client spans to %s, want 1", server.ServiceName, server.GetName(), len(logical), to)
	}
	h.logical = logical[0]
	for _, a := range x.children(h.logical) {
		if a.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
			continue
		}
		h.attempts = append(h.attempts, a)
		for _, p := range x.children(a) {
			if p.GetKind() == tracepb.Span_SPAN_KIND_SERVER && p.ServiceName == to {
				h.peers = append(h.peers, p)
			}
		}
	}
	if len(h.attempts) == 0 || len(h.peers) == 0 {
		return h, fmt.Errorf("logical span %s has %d attempt spans and %d %s server spans under them", h.logical.GetName(), len(h.attempts), len(h.peers), to)
	}
	return h, nil
}

// waitHop waits until the receiver holds the whole hop for the server span
// of `from` named name, in the trace of the first such span.
func waitHop(ctx context.Context, rcv *otlptest.Receiver, from, name, to string, match func(hop) bool) (hop, error) {
	var found hop
	var lastErr error
	_, err := rcv.WaitFor(ctx, func(spans []otlptest.Span) bool {
		x := spanIndex(spans)
		for _, srv := range x.find(from, tracepb.Span_SPAN_KIND_SERVER, name) {
			h, err := x.hopFrom(srv, to)
			if err != nil {
				lastErr = err
				continue
			}
			if match == nil || match(h) {
				found = h
				return true
			}
		}
		return false
	})
	if err != nil && lastErr != nil {
		return found, fmt.Errorf("%w (last mismatch: %w)", err, lastErr)
	}
	if err != nil {
		return found, err
	}
	return found, nil
}

// TestOneTraceAcrossBothServices: the demo's calls each make one trace in
// which order's server span parents a logical client span, its attempt
// spans and user's server span (and the reverse for the profile); every
// process reports its own service.name, and a log line of the handler
// carries the trace's id.
func TestOneTraceAcrossBothServices(t *testing.T) {
	ctx := devstacktest.Context(t, 90*time.Second)
	rcv := otlptest.Start(t)
	s := startStackWith(t, ctx, 2, 2, stackExtras{env: traceEnv(rcv)})
	clients := dialDemo(t, ctx, s)
	if _, err := demo.Run(ctx, clients, io.Discard); err != nil {
		t.Fatal(err)
	}

	create, err := waitHop(ctx, rcv, "order", "order.v1.OrderService/CreateOrder", "user", nil)
	if err != nil {
		t.Fatal(err)
	}
	profile, err := waitHop(ctx, rcv, "user", "user.v1.UserService/GetUserProfile", "order", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []hop{create, profile} {
		t.Logf("trace %s: %s server %s -> logical %s -> %d attempt(s) -> %s server %s",
			h.server.TraceID(), h.server.ServiceName, h.server.GetName(), h.logical.GetName(), len(h.attempts), h.peers[0].ServiceName, h.peers[0].GetName())
		if h.server.ServiceName == h.peers[0].ServiceName {
			t.Errorf("caller and callee report the same service.name %q", h.server.ServiceName)
		}
		if id := h.server.ResourceAttr("service.instance.id"); !strings.HasPrefix(id, h.server.ServiceName+"-") {
			t.Errorf("service.instance.id = %q, want the Consul instance ID", id)
		}
	}
	if create.server.TraceID() == profile.server.TraceID() {
		t.Error("two demo steps share one trace")
	}

	// The user handler logged inside the traced call: its line carries the
	// trace id of the user server span.
	peer := create.peers[0]
	logged := 0
	for _, p := range s.Instances("user") {
		logged += countInLog(t, p.LogPath, "trace_id="+peer.TraceID()+" span_id="+peer.SpanID())
	}
	if logged == 0 {
		t.Errorf("no user log line carries trace_id=%s span_id=%s", peer.TraceID(), peer.SpanID())
	}
}

// TestRetryIsVisibleInTheTrace: with one user instance failing every
// GetUser, a CreateOrder trace shows the logical span with two or more
// attempt spans, the failed one with status Error and its code, and a
// retry event on the logical span. /metrics then counts the retries.
func TestRetryIsVisibleInTheTrace(t *testing.T) {
	ctx := devstacktest.Context(t, 90*time.Second)
	rcv := otlptest.Start(t)
	s := startStackWith(t, ctx, 2, 1, stackExtras{env: traceEnv(rcv)})
	buyer := newBuyer(t, ctx, s)
	users := s.Instances("user")
	setFaults(t, ctx, users[:1], map[string]faults.Fault{getUser: {Abort: &faults.Abort{Percent: 100, Code: "UNAVAILABLE"}}})

	order := s.Instances("order")[0]
	client := orderAt(t, s, order)
	retried := func(h hop) bool { return len(h.attempts) >= 2 }
	for i := 0; i < 60; i++ {
		if _, err := client.CreateOrder(ctx, &orderv1.CreateOrderRequest{
			IdempotencyKey: uuid.NewString(), UserId: buyer, Item: "pen", Quantity: 1,
		}); err != nil {
			t.Fatalf("order %d failed: %v", i, err)
		}
		st, err := devstacktest.Faults(ctx, users[0])
		if err != nil {
			t.Fatal(err)
		}
		if st.Injected[getUser].Abort > 0 {
			break
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	h, err := waitHop(waitCtx, rcv, "order", "order.v1.OrderService/CreateOrder", "user", retried)
	if err != nil {
		t.Fatal(err)
	}
	var failed int
	for _, a := range h.attempts {
		if a.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
			failed++
			if code := a.Attr("rpc.response.status_code"); code != "UNAVAILABLE" {
				t.Errorf("failed attempt span has rpc.response.status_code %q, want UNAVAILABLE", code)
			}
		}
	}
	t.Logf("trace %s: logical span %s with %d attempts, %d failed; retry event: %v",
		h.logical.TraceID(), h.logical.GetName(), len(h.attempts), failed, h.logical.HasEvent("retry"))
	if failed == 0 {
		t.Error("no attempt span has status Error")
	}
	if !h.logical.HasEvent("retry") {
		t.Error("the logical span has no retry event")
	}
	if h.logical.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		t.Error("the logical span failed although the retry succeeded")
	}

	orderMetrics := scrape(t, ctx, order.HTTPAddr)
	userMetrics := scrape(t, ctx, users[0].HTTPAddr)
	for _, m := range []struct {
		from  devstack.Metrics
		name  string
		label string
	}{
		{orderMetrics, "rampart_client_retries_total", `method="/user.v1.UserService/GetUser"`},
		{orderMetrics, "rpc_client_call_duration_seconds_count", "user.v1.UserService/GetUser"},
		{orderMetrics, "rpc_server_call_duration_seconds_count", "order.v1.OrderService/CreateOrder"},
		{orderMetrics, "go_goroutine_count", ""},
		{userMetrics, "rampart_faults_injected_total", `kind="abort"`},
		{userMetrics, "rpc_server_call_duration_seconds_count", "user.v1.UserService/GetUser"},
	} {
		if v := m.from.Sum(m.name, m.label); v <= 0 {
			t.Errorf("/metrics: %s{…%s…} = %v, want > 0 after this traffic", m.name, m.label, v)
		}
	}
}

// scrape reads an instance's /metrics.
func scrape(t *testing.T, ctx context.Context, httpAddr string) devstack.Metrics {
	t.Helper()
	m, err := devstack.Scrape(ctx, httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
