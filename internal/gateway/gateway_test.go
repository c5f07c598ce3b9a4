package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	"github.com/rampart-go/rampart/internal/gateway"
	"github.com/rampart-go/rampart/internal/leakcheck"
	"github.com/rampart-go/rampart/internal/rpc"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// orders is an order.v1.OrderService whose methods the test supplies; it
// records the last request and incoming metadata it saw.
type orders struct {
	orderv1.UnimplementedOrderServiceServer
	create func(context.Context, *orderv1.CreateOrderRequest) (*orderv1.CreateOrderReply, error)
	get    func(context.Context, *orderv1.GetOrderRequest) (*orderv1.GetOrderReply, error)

	mu    sync.Mutex
	calls int
	md    metadata.MD
	req   any
}

func (o *orders) saw(ctx context.Context, req any) {
	md, _ := metadata.FromIncomingContext(ctx)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	o.md, o.req = md, req
}

func (o *orders) last() (int, metadata.MD, any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls, o.md, o.req
}

func (o *orders) CreateOrder(ctx context.Context, req *orderv1.CreateOrderRequest) (*orderv1.CreateOrderReply, error) {
	o.saw(ctx, req)
	if o.create != nil {
		return o.create(ctx, req)
	}
	return &orderv1.CreateOrderReply{Order: &orderv1.Order{Id: "o-1", UserId: req.GetUserId(), Item: req.GetItem(), Quantity: req.GetQuantity()}}, nil
}

func (o *orders) GetOrder(ctx context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderReply, error) {
	o.saw(ctx, req)
	if o.get != nil {
		return o.get(ctx, req)
	}
	return &orderv1.GetOrderReply{Order: &orderv1.Order{Id: req.GetId()}}, nil
}

func (o *orders) ListOrders(ctx context.Context, req *orderv1.ListOrdersRequest) (*orderv1.ListOrdersReply, error) {
	o.saw(ctx, req)
	return &orderv1.ListOrdersReply{}, nil
}

// listen binds a free loopback port.
func listen(t *testing.T) net.Listener {
	t.Helper()
	var lc net.ListenConfig
	lis, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// start runs srv on an in-process gRPC server, stopped when the test ends,
// and a gateway in front of it with c (its Addr ignored), serving on the
// returned listener; served receives what Serve returned.
func start(t *testing.T, srv orderv1.OrderServiceServer, c gateway.Config) (gw *gateway.Gateway, lis net.Listener, served <-chan error) {
	t.Helper()
	grpcLis := listen(t)
	gs := grpc.NewServer()
	orderv1.RegisterOrderServiceServer(gs, srv)
	go func() { _ = gs.Serve(grpcLis) }()
	t.Cleanup(gs.Stop)

	gw = gateway.New(c, orderv1.RegisterOrderServiceHandler)
	if err := gw.Connect(grpcLis.Addr().String(), nil); err != nil {
		t.Fatal(err)
	}
	lis = listen(t)
	done := make(chan error, 1)
	go func() { done <- gw.Serve(lis) }()
	return gw, lis, done
}

// serve is start with the gateway shut down when the test ends, and returns
// the gateway's base URL and a client whose connections close then too.
func serve(t *testing.T, srv orderv1.OrderServiceServer, c gateway.Config) (string, *http.Client) {
	t.Helper()
	gw, lis, served := start(t, srv, c)
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := gw.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve = %v, want http.ErrServerClosed", err)
		}
	})
	return "http://" + lis.Addr().String(), client
}

// call sends one request and returns the status, headers and body.
func call(t *testing.T, client *http.Client, method, url string, body io.Reader, header map[string]string) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// errorBody decodes an error answer, checking that it is JSON; raw holds
// its keys as sent, to see which were left out.
func errorBody(t *testing.T, h http.Header, b []byte) (gateway.ErrorBody, map[string]any) {
	t.Helper()
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body gateway.ErrorBody
	var raw map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", b, err)
	}
	_ = json.Unmarshal(b, &raw)
	return body, raw
}

const validOrder = `{"userId":"6f1c1f7e-3b8a-4d3c-9a57-0d5a4c1b2e3f","item":"pen","quantity":1,"idempotencyKey":"k-body"}`

// TestErrorBodyPerCode: each gRPC answer becomes the standard HTTP status
// and one JSON shape, with reason, field and metadata from the ErrorInfo,
// and Retry-After from a positive pushback on 429 and 503 only.
func TestErrorBodyPerCode(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		pushback   string // grpc-retry-pushback-ms trailer, "" for none
		code       int
		status     string
		reason     string
		field      string
		metadata   map[string]string
		retryAfter string
	}{
		{
			name: "validation", err: kerrors.BadRequest(rpc.ReasonInvalidArgument, "item: must not be blank").WithMetadata(map[string]string{"field": "item"}),
			code: 400, status: "INVALID_ARGUMENT", reason: rpc.ReasonInvalidArgument, field: "item", metadata: map[string]string{"field": "item"},
		},
		{
			name: "not found", err: rpc.Error(codes.NotFound, "ORDER_NOT_FOUND", "order x not found", nil),
			code: 404, status: "NOT_FOUND", reason: "ORDER_NOT_FOUND",
		},
		{
			name: "conflict with field", err: rpc.Error(codes.AlreadyExists, "IDEMPOTENCY_KEY_REUSED", "key reused", map[string]string{"field": "idempotency_key"}),
			code: 409, status: "ALREADY_EXISTS", reason: "IDEMPOTENCY_KEY_REUSED", field: "idempotency_key", metadata: map[string]string{"field": "idempotency_key"},
		},
		{
			name: "metadata without field", err: rpc.Error(codes.Unavailable, rpc.ReasonCircuitOpen, "open", map[string]string{"target": "user"}),
			code: 503, status: "UNAVAILABLE", reason: rpc.ReasonCircuitOpen, metadata: map[string]string{"target": "user"},
		},
		{
			name: "shed with pushback", err: rpc.Error(codes.ResourceExhausted, rpc.ReasonLoadShed, "shed", nil), pushback: "100",
			code: 429, status: "RESOURCE_EXHAUSTED", reason: rpc.ReasonLoadShed, retryAfter: "1",
		},
		{
			name: "unavailable with pushback rounds up", err: rpc.Error(codes.Unavailable, "DEPENDENCY_UNAVAILABLE", "user is unavailable", nil), pushback: "1001",
			code: 503, status: "UNAVAILABLE", reason: "DEPENDENCY_UNAVAILABLE", retryAfter: "2",
		},
		{
			name: "negative pushback: do not retry", err: rpc.Error(codes.Unavailable, "DEPENDENCY_UNAVAILABLE", "user is unavailable", nil), pushback: "-1",
			code: 503, status: "UNAVAILABLE", reason: "DEPENDENCY_UNAVAILABLE",
		},
		{
			name: "pushback on another code", err: rpc.Error(codes.Internal, "INTERNAL", "internal error", nil), pushback: "100",
			code: 500, status: "INTERNAL", reason: "INTERNAL",
		},
		{
			name: "deadline", err: rpc.Error(codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "late", nil),
			code: 504, status: "DEADLINE_EXCEEDED", reason: "DEADLINE_EXCEEDED",
		},
		{
			name: "no ErrorInfo: the status is the reason", err: status.Error(codes.FailedPrecondition, "not now"),
			code: 400, status: "FAILED_PRECONDITION", reason: "FAILED_PRECONDITION",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &orders{get: func(ctx context.Context, _ *orderv1.GetOrderRequest) (*orderv1.GetOrderReply, error) {
				if tt.pushback != "" {
					_ = grpc.SetTrailer(ctx, metadata.Pairs(rpc.PushbackTrailer, tt.pushback))
				}
				return nil, tt.err
			}}
			base, client := serve(t, srv, gateway.DefaultConfig())
			code, h, b := call(t, client, http.MethodGet, base+"/v1/orders/x", nil, nil)
			if code != tt.code {
				t.Fatalf("HTTP %d (%s), want %d", code, b, tt.code)
			}
			body, raw := errorBody(t, h, b)
			want := gateway.ErrorBody{Code: tt.code, Status: tt.status, Reason: tt.reason, Message: status.Convert(tt.err).Message(), Field: tt.field, Metadata: tt.metadata}
			if body.Code != want.Code || body.Status != want.Status || body.Reason != want.Reason || body.Message != want.Message ||
				body.Field != want.Field || len(body.Metadata) != len(want.Metadata) {
				t.Errorf("body %s, want %+v", b, want)
			}
			for k, v := range want.Metadata {
				if body.Metadata[k] != v {
					t.Errorf("metadata[%s] = %q, want %q", k, body.Metadata[k], v)
				}
			}
			if _, ok := raw["field"]; ok != (tt.field != "") {
				t.Errorf("body %s: field present = %v, want %v", b, ok, tt.field != "")
			}
			if _, ok := raw["metadata"]; ok != (len(tt.metadata) > 0) {
				t.Errorf("body %s: metadata present = %v, want %v", b, ok, len(tt.metadata) > 0)
			}
			if got := h.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
		})
	}
}

// TestIdempotencyKeyHeader: an empty idempotency_key takes the
// Idempotency-Key header; a key in the body wins; a message without the
// field is left alone.
func TestIdempotencyKeyHeader(t *testing.T) {
	srv := &orders{}
	base, client := serve(t, srv, gateway.DefaultConfig())
	noKey := `{"userId":"u","item":"pen","quantity":1}`
	tests := []struct {
		name, body, header, want string
	}{
		{"header only", noKey, "k-header", "k-header"},
		{"body wins", validOrder, "k-header", "k-body"},
		{"body only", validOrder, "", "k-body"},
		{"neither", noKey, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"Content-Type": "application/json"}
			if tt.header != "" {
				h[gateway.IdempotencyKeyHeader] = tt.header
			}
			code, _, b := call(t, client, http.MethodPost, base+"/v1/orders", strings.NewReader(tt.body), h)
			if code != http.StatusOK {
				t.Fatalf("HTTP %d: %s", code, b)
			}
			_, _, req := srv.last()
			if got := req.(*orderv1.CreateOrderRequest).GetIdempotencyKey(); got != tt.want {
				t.Errorf("the server saw idempotency_key %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("message without the field", func(t *testing.T) {
		code, _, b := call(t, client, http.MethodGet, base+"/v1/orders/o-7", nil, map[string]string{gateway.IdempotencyKeyHeader: "k"})
		if code != http.StatusOK {
			t.Fatalf("HTTP %d: %s", code, b)
		}
		if _, _, req := srv.last(); req.(*orderv1.GetOrderRequest).GetId() != "o-7" {
			t.Errorf("the server saw %v", req)
		}
	})
}

// TestHeaderForwarding: the W3C trace context arrives as metadata under its
// own names, the permanent HTTP headers as grpc-gateway forwards them, and a
// client cannot set other metadata (Rampart's attempt header among it).
func TestHeaderForwarding(t *testing.T) {
	srv := &orders{}
	base, client := serve(t, srv, gateway.DefaultConfig())
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	code, _, b := call(t, client, http.MethodGet, base+"/v1/orders/o-1", nil, map[string]string{
		"traceparent":                        tp,
		"tracestate":                         "vendor=x",
		"User-Agent":                         "probe/1",
		"X-Custom":                           "dropped",
		"Grpc-Metadata-" + rpc.AttemptHeader: "2",
	})
	if code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", code, b)
	}
	_, md, _ := srv.last()
	for key, want := range map[string]string{
		"traceparent":            tp,
		"tracestate":             "vendor=x",
		"grpcgateway-user-agent": "probe/1",
		"x-custom":               "",
		rpc.AttemptHeader:        "",
	} {
		got := strings.Join(md.Get(key), ",")
		if got != want {
			t.Errorf("metadata %s = %q, want %q", key, got, want)
		}
	}
	if len(md.Get("x-forwarded-for")) == 0 {
		t.Error("no x-forwarded-for: grpc-gateway's default forwarding is gone")
	}
}

// TestSuccessShape: a reply is protojson with the OpenAPI documents'
// lowerCamelCase names and every field written, zero values included.
func TestSuccessShape(t *testing.T) {
	base, client := serve(t, &orders{}, gateway.DefaultConfig())
	code, h, b := call(t, client, http.MethodPost, base+"/v1/orders", strings.NewReader(`{"user_id":"u","item":"pen"}`), nil)
	if code != http.StatusOK || h.Get("Content-Type") != "application/json" {
		t.Fatalf("HTTP %d %s: %s", code, h.Get("Content-Type"), b)
	}
	var got map[string]map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	o := got["order"]
	if o["userId"] != "u" || o["item"] != "pen" || o["quantity"] != float64(0) {
		t.Errorf("reply %s, want order with userId u (proto names accepted in), item pen and quantity 0 written", b)
	}
}

// TestMalformedRequests: what cannot become a request is a 4xx JSON error,
// never a 500, and the ones the gateway refuses never reach the server; a
// field too long for the proto's rules reaches validation and comes back
// naming the field.
func TestMalformedRequests(t *testing.T) {
	const limit = 64 << 10
	srv := &orders{create: func(_ context.Context, req *orderv1.CreateOrderRequest) (*orderv1.CreateOrderReply, error) {
		if len(req.GetItem()) > 200 {
			return nil, kerrors.BadRequest(rpc.ReasonInvalidArgument, "item: must be at most 200 characters").WithMetadata(map[string]string{"field": "item"})
		}
		return &orderv1.CreateOrderReply{}, nil
	}}
	c := gateway.DefaultConfig()
	c.MaxBodyBytes = limit
	base, client := serve(t, srv, c)
	jsonCT := map[string]string{"Content-Type": "application/json"}
	big := `{"item":"` + strings.Repeat("x", limit/2) + `"}`
	tests := []struct {
		name        string
		method      string
		path        string
		body        io.Reader
		code        int
		status      string
		reason      string
		field       string
		message     []string // what the message says, in order
		reachServer bool
	}{
		{"malformed JSON", "POST", "/v1/orders", strings.NewReader(`{"item":`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "", []string{"request body: unexpected EOF"}, false},
		{"not JSON at all", "POST", "/v1/orders", strings.NewReader(`item=pen`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "", []string{"request body: "}, false},
		{"unknown field", "POST", "/v1/orders", strings.NewReader(`{"item":"pen","colour":"red"}`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "", []string{"request body: ", `unknown field "colour"`}, false},
		{"wrong type", "POST", "/v1/orders", strings.NewReader(`{"quantity":"many"}`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "", []string{"request body: ", "invalid value for int32 field quantity"}, false},
		{"wrong query type", "GET", "/v1/users/u/orders?page_size=ten", nil, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "", []string{"page_size"}, false},
		{"long field reaches validation", "POST", "/v1/orders", strings.NewReader(big), 400, "INVALID_ARGUMENT", rpc.ReasonInvalidArgument, "item", []string{"item: "}, true},
		{"body over the limit, length declared", "POST", "/v1/orders", bytes.NewReader(make([]byte, limit+1)), 413, "INVALID_ARGUMENT", gateway.ReasonBodyTooLarge, "", []string{"request body is larger than 65536 bytes"}, false},
		{"body over the limit, chunked", "POST", "/v1/orders", io.MultiReader(strings.NewReader(`{"item":"`), strings.NewReader(strings.Repeat("x", limit))), 413, "INVALID_ARGUMENT", gateway.ReasonBodyTooLarge, "", []string{"request body is larger than 65536 bytes"}, false},
		{"unknown path", "GET", "/v1/nothing/here", nil, 404, "NOT_FOUND", "NOT_FOUND", "", []string{"no route for GET /v1/nothing/here"}, false},
		{"wrong method", "DELETE", "/v1/orders/o-1", nil, 405, "UNIMPLEMENTED", "UNIMPLEMENTED", "", []string{"method DELETE not allowed on /v1/orders/o-1"}, false},
		{"GET on a POST route", "GET", "/v1/orders", nil, 405, "UNIMPLEMENTED", "UNIMPLEMENTED", "", []string{"method GET not allowed on /v1/orders"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _, _ := srv.last()
			code, h, b := call(t, client, tt.method, base+tt.path, tt.body, jsonCT)
			if code != tt.code {
				t.Fatalf("HTTP %d (%.200s), want %d", code, b, tt.code)
			}
			body, _ := errorBody(t, h, b)
			if body.Code != tt.code || body.Status != tt.status || body.Reason != tt.reason || body.Field != tt.field ||
				!saysInOrder(body.Message, tt.message) {
				t.Errorf("body %.300s, want code %d status %s reason %s field %q and a message saying %q",
					b, tt.code, tt.status, tt.reason, tt.field, tt.message)
			}
			if after, _, _ := srv.last(); (after > before) != tt.reachServer {
				t.Errorf("reached the server: %v, want %v", after > before, tt.reachServer)
			}
		})
	}
}

// TestMethodNotAllowed: a method the API has no route for on a path that
// has routes is a 405 whose Allow header lists the methods it has (RFC 9110
// §15.5.6), never reaching the server; a form-encoded POST to a GET-only
// path (what `curl -d` sends) is one too, not served as the GET.
func TestMethodNotAllowed(t *testing.T) {
	srv := &orders{}
	base, client := serve(t, srv, gateway.DefaultConfig())
	for _, tt := range []struct {
		method, path, contentType, allow string
	}{
		{"DELETE", "/v1/orders/o-1", "", "GET"},
		{"PUT", "/v1/orders/o-1", "application/json", "GET"},
		{"GET", "/v1/orders", "", "POST"},
		{"PATCH", "/v1/users/u-1/orders?page_size=2", "", "GET"},
		{"POST", "/v1/orders/o-1", "application/x-www-form-urlencoded", "GET"},
		{"OPTIONS", "/v1/orders", "", "POST"},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			before, _, _ := srv.last()
			var body io.Reader
			h := map[string]string{}
			if tt.contentType != "" {
				body, h["Content-Type"] = strings.NewReader("id=o-1"), tt.contentType
			}
			code, hdr, b := call(t, client, tt.method, base+tt.path, body, h)
			if code != http.StatusMethodNotAllowed {
				t.Fatalf("HTTP %d (%.200s), want 405", code, b)
			}
			if got := hdr.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
			eb, _ := errorBody(t, hdr, b)
			if eb.Status != "UNIMPLEMENTED" || !strings.Contains(eb.Message, "allowed: "+tt.allow) {
				t.Errorf("body %s, want UNIMPLEMENTED naming the allowed methods", b)
			}
			if after, _, _ := srv.last(); after != before {
				t.Error("a refused method reached the server")
			}
		})
	}
}

// TestShutdownWaitsForCallsInFlight: Shutdown returns only after a call in
// flight has had its answer, and new calls are refused after it.
func TestShutdownWaitsForCallsInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	srv := &orders{get: func(_ context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderReply, error) {
		close(entered)
		<-release
		return &orderv1.GetOrderReply{Order: &orderv1.Order{Id: req.GetId()}}, nil
	}}
	gw, lis, served := start(t, srv, gateway.DefaultConfig())
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+lis.Addr().String()+"/v1/orders/o-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan int, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			answered <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- gw.Shutdown(ctx)
	}()
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) while a call was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if code := <-answered; code != http.StatusOK {
		t.Errorf("the call in flight got HTTP %d, want 200", code)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve = %v, want http.ErrServerClosed", err)
	}
	d := net.Dialer{Timeout: time.Second}
	if conn, err := d.DialContext(t.Context(), "tcp", lis.Addr().String()); err == nil {
		_ = conn.Close()
		t.Error("the listener still accepts after Shutdown")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		c    gateway.Config
		want string
	}{
		{"default", gateway.DefaultConfig(), ""},
		{"off", gateway.Config{Addr: "", MaxBodyBytes: 1}, ""},
		{"bad addr", gateway.Config{Addr: "nowhere", MaxBodyBytes: 1}, `addr: must be host:port, or empty to turn the gateway off, got "nowhere"`},
		{"no body", gateway.Config{Addr: ":8080"}, "max_body_bytes: must be > 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if err := tt.c.Validate(); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Fatalf("Validate = %q, want %q", got, tt.want)
			}
		})
	}
}

// saysInOrder reports whether msg holds each of parts, in order. protobuf's
// errors put a random space after "proto:" so that no one matches them
// whole.
func saysInOrder(msg string, parts []string) bool {
	for _, p := range parts {
		i := strings.Index(msg, p)
		if i < 0 {
			return false
		}
		msg = msg[i+len(p):]
	}
	return true
}
