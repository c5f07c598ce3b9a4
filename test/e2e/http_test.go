package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/cmd/devstack/demo"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/gateway"
	"github.com/rampart-go/rampart/internal/rpc"
	"github.com/rampart-go/rampart/internal/telemetry/otlptest"
)

// gatewayClient calls the instances' gateways over HTTP/JSON, as a client
// outside the cluster would.
type gatewayClient struct {
	t      *testing.T
	ctx    context.Context
	client *http.Client
}

func newGatewayClient(t *testing.T, ctx context.Context) *gatewayClient {
	t.Helper()
	// Expect: 100-continue lets a server refuse a body by its declared
	// length before the client sends it, as curl does for large bodies.
	tr := &http.Transport{ExpectContinueTimeout: time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return &gatewayClient{t: t, ctx: ctx, client: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
}

// reply is one HTTP answer.
type reply struct {
	code   int
	header http.Header
	body   []byte
}

// errorBody decodes an error answer, failing the test unless it is JSON.
func (r reply) errorBody(t *testing.T) gateway.ErrorBody {
	t.Helper()
	var e gateway.ErrorBody
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("HTTP %d with Content-Type %q, want application/json", r.code, ct)
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("HTTP %d body %.200q is not a JSON error: %v", r.code, r.body, err)
	}
	return e
}

// do sends one request; body, when not nil, is sent with its length.
func (g *gatewayClient) do(method, rawURL string, body []byte, header map[string]string) reply {
	g.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(g.ctx, method, rawURL, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatalf("%s %s: reading the body: %v", method, rawURL, err)
	}
	return reply{code: resp.StatusCode, header: resp.Header, body: b}
}

// ok sends one request that must answer 200 and decodes its JSON into out.
func (g *gatewayClient) ok(method, rawURL, body string, header map[string]string, out any) {
	g.t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	r := g.do(method, rawURL, b, header)
	if r.code != http.StatusOK {
		g.t.Fatalf("%s %s: HTTP %d %s", method, rawURL, r.code, r.body)
	}
	if err := json.Unmarshal(r.body, out); err != nil {
		g.t.Fatalf("%s %s: %s is not the JSON expected: %v", method, rawURL, r.body, err)
	}
}

// The JSON shapes of the replies, in the OpenAPI documents' names.
type (
	httpUser  struct{ ID, Name, Email string }
	httpOrder struct {
		ID       string
		UserID   string `json:"userId"`
		Item     string
		Quantity int
	}
	httpOrders struct {
		Orders        []httpOrder
		NextPageToken string `json:"nextPageToken"`
	}
	httpProfile struct {
		User   httpUser
		Orders []struct{ ID, Item string }
	}
)

// checkErrorReply asserts an error answer's HTTP status, status, reason and
// field (an empty field: none).
func checkErrorReply(t *testing.T, r reply, code int, status, reason, field string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("HTTP %d (%s), want %d", r.code, r.body, code)
	}
	e := r.errorBody(t)
	if e.Code != code || e.Status != status || e.Reason != reason || e.Field != field || e.Message == "" {
		t.Errorf("error %s, want code %d status %s reason %s field %q and a message", r.body, code, status, reason, field)
	}
}

// gatewayOf checks that Consul lists each instance of name with its own
// gateway address as metadata, and returns the first.
func gatewayOf(t *testing.T, ctx context.Context, s *devstack.Stack, name string) string {
	t.Helper()
	entries, err := passing(ctx, s.Client, name)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, p := range s.Instances(name) {
		want[p.GatewayAddr] = true
	}
	for _, e := range entries {
		if gw := e.Service.Meta[demo.GatewayMeta]; !want[gw] {
			t.Errorf("%s registers gateway %q, not one of its instances' %v", e.Service.ID, gw, want)
		}
	}
	return s.Instances(name)[0].GatewayAddr
}

// TestHTTPDemoFlow runs the demo over HTTP/JSON across both services at the
// gateways Consul lists: create a user, an order whose key comes in the
// Idempotency-Key header, the order, the profile, the orders page by page.
// Then the error answers (400 naming the field, 404, 409 on a reused key),
// malformed input (each a 4xx JSON error, never a 500), the curl lines make
// run prints, a traceparent continuing the caller's trace, and last 503
// from order's gateway once the user service is gone.
func TestHTTPDemoFlow(t *testing.T) {
	ctx := devstacktest.Context(t, 3*time.Minute)
	rcv := otlptest.Start(t)
	s := startStackWith(t, ctx, 1, 1, stackExtras{env: traceEnv(rcv)})
	userGW := "http://" + gatewayOf(t, ctx, s, "user")
	orderGW := "http://" + gatewayOf(t, ctx, s, "order")
	g := newGatewayClient(t, ctx)

	var user struct{ User httpUser }
	g.ok("POST", userGW+"/v1/users", `{"name":"Ada Lovelace","email":"ada@example.com"}`, nil, &user)
	checkUUID(t, "user ID", user.User.ID)
	if user.User.Name != "Ada Lovelace" || user.User.Email != "ada@example.com" {
		t.Errorf("created user %+v", user.User)
	}
	buyer := user.User.ID

	key := uuid.NewString()
	orderBody := `{"userId":"` + buyer + `","item":"analytical engine","quantity":1}`
	var placed, again, got struct{ Order httpOrder }
	g.ok("POST", orderGW+"/v1/orders", orderBody, map[string]string{"Idempotency-Key": key}, &placed)
	checkUUID(t, "order ID", placed.Order.ID)
	if placed.Order.UserID != buyer || placed.Order.Item != "analytical engine" || placed.Order.Quantity != 1 {
		t.Errorf("placed order %+v", placed.Order)
	}
	g.ok("POST", orderGW+"/v1/orders", orderBody, map[string]string{"Idempotency-Key": key}, &again)
	if again.Order != placed.Order {
		t.Errorf("the same key again placed %+v, want the first order %+v", again.Order, placed.Order)
	}
	g.ok("GET", orderGW+"/v1/orders/"+placed.Order.ID, "", nil, &got)
	if got.Order != placed.Order {
		t.Errorf("GET the order = %+v, want %+v", got.Order, placed.Order)
	}
	var profile httpProfile
	g.ok("GET", userGW+"/v1/users/"+buyer+"/profile", "", nil, &profile)
	if profile.User != user.User || len(profile.Orders) != 1 || profile.Orders[0].ID != placed.Order.ID {
		t.Errorf("profile %+v, want %+v with order %s", profile, user.User, placed.Order.ID)
	}

	t.Run("ListPages", func(t *testing.T) {
		want := []string{placed.Order.ID}
		for range 2 {
			var o struct{ Order httpOrder }
			g.ok("POST", orderGW+"/v1/orders", `{"userId":"`+buyer+`","item":"pen","quantity":2}`,
				map[string]string{"Idempotency-Key": uuid.NewString()}, &o)
			want = append(want, o.Order.ID)
		}
		var ids []string
		q := url.Values{"page_size": {"2"}}
		for pages := 1; ; pages++ {
			var page httpOrders
			g.ok("GET", orderGW+"/v1/users/"+buyer+"/orders?"+q.Encode(), "", nil, &page)
			for _, o := range page.Orders {
				ids = append(ids, o.ID)
			}
			if page.NextPageToken == "" {
				break
			}
			if pages == 3 {
				t.Fatalf("still a next page after %d pages of 2 for 3 orders", pages)
			}
			q.Set("page_token", page.NextPageToken)
		}
		equalIDs(t, ids, want)
	})

	t.Run("Errors", func(t *testing.T) {
		checkErrorReply(t, g.do("POST", userGW+"/v1/users", []byte(`{"name":"Ada","email":"not an address"}`), nil),
			400, "INVALID_ARGUMENT", rpc.ReasonInvalidArgument, "email")
		checkErrorReply(t, g.do("GET", orderGW+"/v1/orders/not-a-uuid", nil, nil), 400, "INVALID_ARGUMENT", rpc.ReasonInvalidArgument, "id")
		checkErrorReply(t, g.do("POST", orderGW+"/v1/orders", []byte(orderBody), nil), // no key anywhere
			400, "INVALID_ARGUMENT", rpc.ReasonInvalidArgument, "idempotency_key")
		checkErrorReply(t, g.do("GET", orderGW+"/v1/orders/"+uuid.NewString(), nil, nil), 404, "NOT_FOUND", "ORDER_NOT_FOUND", "")
		checkErrorReply(t, g.do("POST", orderGW+"/v1/orders", []byte(`{"userId":"`+uuid.NewString()+`","item":"pen","quantity":1}`),
			map[string]string{"Idempotency-Key": uuid.NewString()}), 404, "NOT_FOUND", "BUYER_NOT_FOUND", "user_id")
		reused := strings.Replace(orderBody, `"quantity":1`, `"quantity":3`, 1)
		checkErrorReply(t, g.do("POST", orderGW+"/v1/orders", []byte(reused), map[string]string{"Idempotency-Key": key}),
			409, "ALREADY_EXISTS", "IDEMPOTENCY_KEY_REUSED", "idempotency_key")
	})

	t.Run("Malformed", func(t *testing.T) { checkMalformed(t, g, userGW, s) })

	t.Run("CurlLines", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Skip("no curl on PATH")
		}
		lines := demo.CurlLines(strings.TrimPrefix(userGW, "http://"), strings.TrimPrefix(orderGW, "http://"),
			&demo.Result{User: &userv1.User{Id: buyer}})
		for i, want := range []string{"user", "order", "orders"} {
			out, err := exec.CommandContext(ctx, "bash", "-c", lines[i]).Output()
			var reply map[string]json.RawMessage
			if err != nil || json.Unmarshal(out, &reply) != nil || reply[want] == nil || reply["status"] != nil {
				t.Errorf("%s\n= %s (%v), want JSON with %q", lines[i], out, err, want)
			}
		}
	})

	t.Run("TraceContinues", func(t *testing.T) {
		traceID, parentID := randomHex(t, 16), randomHex(t, 8)
		g.ok("GET", userGW+"/v1/users/"+buyer+"/profile", "", map[string]string{"traceparent": "00-" + traceID + "-" + parentID + "-01"}, &profile)
		waitCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		h, err := waitHop(waitCtx, rcv, "user", "user.v1.UserService/GetUserProfile", "order", func(h hop) bool { return h.server.TraceID() == traceID })
		if err != nil {
			t.Fatal(err)
		}
		if h.server.ParentSpanID() != parentID {
			t.Errorf("user's server span has parent %s, want the caller's span %s", h.server.ParentSpanID(), parentID)
		}
		if h.peers[0].TraceID() != traceID || h.peers[0].GetKind() != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("order's span is in trace %s, want the caller's %s", h.peers[0].TraceID(), traceID)
		}
	})

	t.Run("DependencyDown", func(t *testing.T) {
		for _, p := range s.Instances("user") {
			if err := p.Stop(15 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		// Order drops the instances as Consul's watch reports them gone;
		// until then a call may still find the connection refused, which
		// ends the same way.
		var r reply
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			r = g.do("POST", orderGW+"/v1/orders", []byte(orderBody), map[string]string{"Idempotency-Key": uuid.NewString()})
			if r.code == http.StatusServiceUnavailable {
				break
			}
		}
		checkErrorReply(t, r, 503, "UNAVAILABLE", "DEPENDENCY_UNAVAILABLE", "")
		if ra := r.header.Get("Retry-After"); ra != "" {
			t.Errorf("Retry-After %q on an answer whose pushback says not to retry", ra)
		}
	})
}

// checkMalformed sends what cannot become a request to user's gateway at
// base: each answer is a 4xx JSON error, never a 500, and the instance
// stays up.
func checkMalformed(t *testing.T, g *gatewayClient, base string, s *devstack.Stack) {
	t.Helper()
	mib := `{"name":"` + strings.Repeat("x", 1<<20) + `","email":"ada@example.com"}`
	tests := []struct {
		name, method, path string
		body               []byte
		code               int
		reason, field      string
	}{
		{"malformed JSON", "POST", "/v1/users", []byte(`{"name":"Ada",`), 400, "INVALID_ARGUMENT", ""},
		{"unknown field", "POST", "/v1/users", []byte(`{"name":"Ada","email":"ada@example.com","age":36}`), 400, "INVALID_ARGUMENT", ""},
		{"wrong type", "POST", "/v1/users", []byte(`{"name":["Ada"],"email":"ada@example.com"}`), 400, "INVALID_ARGUMENT", ""},
		{"a 1 MiB string reaches validation", "POST", "/v1/users", []byte(mib), 400, rpc.ReasonInvalidArgument, "name"},
		{"unknown path", "GET", "/v1/usrs", nil, 404, "NOT_FOUND", ""},
		{"wrong method", "DELETE", "/v1/users/" + uuid.NewString(), nil, 405, "UNIMPLEMENTED", ""},
		{"body over max_body_bytes", "POST", "/v1/users", make([]byte, gateway.DefaultMaxBodyBytes+1), 413, gateway.ReasonBodyTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.do(tt.method, base+tt.path, tt.body, nil)
			if r.code != tt.code {
				t.Fatalf("HTTP %d (%.300s), want %d", r.code, r.body, tt.code)
			}
			e := r.errorBody(t)
			if e.Reason != tt.reason || e.Field != tt.field {
				t.Errorf("error %.300s, want reason %s field %q", r.body, tt.reason, tt.field)
			}
		})
	}
	for _, p := range s.Instances("user") {
		select {
		case <-p.Exited():
			t.Fatalf("%s exited: %v", p.LogPath, p.ExitErr())
		default:
		}
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
