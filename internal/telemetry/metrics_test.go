package telemetry_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// The middleware's counters, created through the process's meter provider
// with the names and units the middleware uses, must be exposed under
// exactly those names, next to the gRPC and runtime metrics.
func TestMetricsEndpoint(t *testing.T) {
	clearOTelEnv(t)
	tel, _ := newTelemetry(t, telemetry.Config{})
	client := dial(t, tel, serve(t, tel, &backend{}), tel.LogicalSpan("user"))
	if _, err := client.GetUser(testCtx(t), &userv1.GetUserRequest{Id: "u1"}); err != nil {
		t.Fatalf("GetUser: %v", err)
	}

	// Literal names rather than the middleware's constants: importing the
	// shedding package starts aegis' CPU sampler, which goleak would flag.
	meter := tel.MeterProvider().Meter("test")
	for _, c := range []struct{ name, unit string }{
		{"rampart_client_retries_total", "{retry}"},
		{"rampart_retry_budget_exhausted_total", "{retry}"},
		{"rampart_breaker_rejections_total", "{call}"},
		{"rampart_faults_injected_total", "{fault}"},
		{"rampart_shed_total", "{request}"},
	} {
		counter, err := meter.Int64Counter(c.name, metric.WithUnit(c.unit))
		if err != nil {
			t.Fatalf("counter %s: %v", c.name, err)
		}
		counter.Add(testCtx(t), 2)
	}

	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequestWithContext(testCtx(t), http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", rec.Code, rec.Body)
	}
	body := rec.Body.String()

	for _, want := range []string{
		`(?m)^rampart_client_retries_total\{.*\} 2$`,
		`(?m)^rampart_retry_budget_exhausted_total\{.*\} 2$`,
		`(?m)^rampart_breaker_rejections_total\{.*\} 2$`,
		`(?m)^rampart_faults_injected_total\{.*\} 2$`,
		`(?m)^rampart_shed_total\{.*\} 2$`,
		`(?m)^rpc_server_call_duration_seconds_count\{.*rpc_method="user.v1.UserService/GetUser".*\} 1$`,
		`(?m)^rpc_client_call_duration_seconds_count\{.*rampart_target="user".*rpc_method="user.v1.UserService/GetUser".*\} 1$`,
		`(?m)^go_goroutine_count\{.*\} \d+$`,
		`(?m)^go_memory_used_bytes\{.*\} \d+$`,
		`(?m)^target_info\{.*service_instance_id="user-1234abcd".*\} 1$`,
	} {
		if !regexp.MustCompile(want).MatchString(body) {
			t.Errorf("/metrics has no line matching %s", want)
		}
	}
	if regexp.MustCompile(`_total_total`).MatchString(body) {
		t.Error("/metrics has a doubled _total suffix")
	}
}

// RPC metrics carry target, method and code only: no series per instance
// address (ports change with every restart) and none per method name a
// client made up (a server answers those Unimplemented).
func TestRPCMetricsHaveBoundedLabels(t *testing.T) {
	clearOTelEnv(t)
	tel, _ := newTelemetry(t, telemetry.Config{})
	addr := serve(t, tel, &backend{})
	client := dial(t, tel, addr)
	if _, err := client.GetUser(testCtx(t), &userv1.GetUserRequest{Id: "u1"}); err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cc.Close() }()
	for i := range 10 {
		err := cc.Invoke(testCtx(t), fmt.Sprintf("/made.up.Service/Method%d", i), &userv1.GetUserRequest{}, &userv1.GetUserReply{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("made-up method: %v, want Unimplemented", err)
		}
	}

	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequestWithContext(testCtx(t), http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, bad := range []string{"server_address", "server_port", "network_peer", "made_up", "made.up"} {
		if strings.Contains(body, bad) {
			t.Errorf("/metrics mentions %q:\n%s", bad, grepLines(body, bad))
		}
	}
	if n := len(regexp.MustCompile(`(?m)^rpc_server_call_duration_seconds_count\{`).FindAllString(body, -1)); n != 1 {
		t.Errorf("%d server duration series, want 1 (GetUser OK):\n%s", n, grepLines(body, "rpc_server_call_duration_seconds_count"))
	}
}

func grepLines(body, s string) string {
	var out []string
	for l := range strings.SplitSeq(body, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
