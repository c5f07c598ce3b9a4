package retry_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/go-kratos/kratos/v2/transport"

	"github.com/rampart-go/rampart/internal/middleware/retry"
	"github.com/rampart-go/rampart/internal/rpc"
)

// header is a transport.Header over a plain map, as gRPC metadata is.
type header map[string][]string

func (h header) Get(k string) string {
	if v := h[strings.ToLower(k)]; len(v) > 0 {
		return v[0]
	}
	return ""
}
func (h header) Set(k, v string)          { h[strings.ToLower(k)] = []string{v} }
func (h header) Add(k, v string)          { h[strings.ToLower(k)] = append(h[strings.ToLower(k)], v) }
func (h header) Keys() []string           { return slices.Collect(maps.Keys(h)) }
func (h header) Values(k string) []string { return h[strings.ToLower(k)] }

// fakeTransport is the server transport a Kratos gRPC server puts in the
// handler's context.
type fakeTransport struct{ req header }

func (fakeTransport) Kind() transport.Kind              { return transport.KindGRPC }
func (fakeTransport) Endpoint() string                  { return "grpc://127.0.0.1:0" }
func (fakeTransport) Operation() string                 { return "/order.v1.OrderService/CreateOrder" }
func (t fakeTransport) RequestHeader() transport.Header { return t.req }
func (fakeTransport) ReplyHeader() transport.Header     { return header{} }

var _ transport.Transporter = fakeTransport{}

// chainStoppedCtx returns the context a handler behind Server sees for a
// request carrying the given attempt header.
func chainStoppedCtx(t *testing.T, attempt string) context.Context {
	t.Helper()
	var inner context.Context
	h := retry.Server()(func(ctx context.Context, _ any) (any, error) {
		inner = ctx
		return nil, nil
	})
	ctx := transport.NewServerContext(testCtx(t), fakeTransport{req: header{rpc.AttemptHeader: {attempt}}})
	if _, err := h(ctx, nil); err != nil {
		t.Fatal(err)
	}
	return inner
}

func TestServerChainStop(t *testing.T) {
	tests := []struct {
		name     string
		header   []string // nil: no server transport at all
		attempts int
	}{
		{"retried request", []string{"2"}, 1},
		{"last retry", []string{"5"}, 1},
		{"first attempt", []string{"1"}, 3},
		{"no header", []string{}, 3},
		{"malformed header", []string{"two"}, 3},
		{"zero", []string{"0"}, 3},
		{"no server transport", nil, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(filled(retry.Config{MaxAttempts: 3}), 0)
			inv := failing(unavailable(), unavailable(), unavailable())
			handler := retry.Server()(func(ctx context.Context, _ any) (any, error) {
				// The handler calls the next hop through the client chain.
				return nil, h.call(ctx, getUser, inv)
			})
			ctx := testCtx(t)
			if tt.header != nil {
				ctx = transport.NewServerContext(ctx, fakeTransport{req: header{rpc.AttemptHeader: tt.header}})
			}

			_, _ = handler(ctx, nil)

			if inv.attempts() != tt.attempts {
				t.Fatalf("outgoing attempts = %d, want %d", inv.attempts(), tt.attempts)
			}
			// The next hop sees a first attempt, so it may retry its own
			// calls: only one hop of the chain retries.
			if got := inv.headers()[0]; !slices.Equal(got, []string{"1"}) {
				t.Fatalf("first outgoing attempt header %v, want [1]", got)
			}
		})
	}
}
