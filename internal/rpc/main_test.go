package rpc_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/transport"
	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: Sleep
// must not, however it ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testCtx is a context that ends with the test, and after a minute at most.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// header is a transport.Header over net/http's canonical keys.
type header http.Header

func (h header) Get(k string) string      { return http.Header(h).Get(k) }
func (h header) Set(k, v string)          { http.Header(h).Set(k, v) }
func (h header) Add(k, v string)          { http.Header(h).Add(k, v) }
func (h header) Values(k string) []string { return http.Header(h).Values(k) }
func (h header) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// fakeTransport is what a Kratos server or client puts in a call's context.
type fakeTransport struct {
	op  string
	req header
}

func (fakeTransport) Kind() transport.Kind              { return transport.KindGRPC }
func (fakeTransport) Endpoint() string                  { return "grpc://127.0.0.1:0" }
func (t fakeTransport) Operation() string               { return t.op }
func (t fakeTransport) RequestHeader() transport.Header { return t.req }
func (fakeTransport) ReplyHeader() transport.Header     { return header{} }

var _ transport.Transporter = fakeTransport{}

// serverCtx is the context a handler sees for a request to op with the
// given request headers (key, value, key, value, …).
func serverCtx(t *testing.T, op string, kv ...string) context.Context {
	t.Helper()
	h := header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return transport.NewServerContext(testCtx(t), fakeTransport{op: op, req: h})
}
