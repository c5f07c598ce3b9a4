package server

import (
	"context"

	"github.com/go-kratos/kratos/v2/transport"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// serverTransportKey is the key transport.NewServerContext stores a server
// transport under, learnt once by asking transport.FromServerContext, which
// looks it up with Value (keySpy): Kratos keeps the key's type unexported.
// With it, a call's context answers for its transport itself
// (serverCall.Value): one allocation per call for the context and the
// transport together, where NewServerContext over a separate transport is
// two. Should a Kratos release look the transport up another way, the key
// stays nil and calls fall back to NewServerContext.
var serverTransportKey = func() any {
	var spy keySpy
	transport.FromServerContext(&spy)
	return spy.key
}()

// keySpy is a context that remembers the key it was asked for. Value is
// all it answers.
type keySpy struct {
	context.Context //nolint:containedctx // never called: nil
	key             any
}

func (s *keySpy) Value(key any) any {
	s.key = key
	return nil
}

// serverCall is one unary call of a chained method: its context, which
// carries its Kratos transport, and the transport.
type serverCall struct {
	context.Context //nolint:containedctx // the call's context, extended
	tr              serverTransport
}

func newServerCall(ctx context.Context, endpoint, operation string, handler grpc.UnaryHandler) *serverCall {
	c := &serverCall{Context: ctx}
	c.tr = serverTransport{endpoint: endpoint, operation: operation, handler: handler}
	c.tr.req.ctx = ctx
	return c
}

// withTransport is the call's context with its transport in it.
func (c *serverCall) withTransport() context.Context {
	if serverTransportKey == nil {
		return transport.NewServerContext(c.Context, &c.tr)
	}
	return c
}

// Value answers transport.FromServerContext with the call's transport.
func (c *serverCall) Value(key any) any {
	if key == serverTransportKey {
		return &c.tr
	}
	return c.Context.Value(key)
}

var _ transport.Transporter = (*serverTransport)(nil)

// serverTransport is what Kratos middleware read of a gRPC call on the
// server (transport.FromServerContext), as Kratos' own server transport
// gives it: kind grpc, the server's endpoint, the full method as the
// operation, the incoming metadata as the request header, and a reply
// header that the server sends as the call's gRPC header. Both headers
// cost nothing until used.
type serverTransport struct {
	endpoint  string
	operation string
	req       requestHeader
	reply     replyHeader
	// handler is gRPC's handler of this call, which the method's compiled
	// chain ends in (invokeHandler).
	handler grpc.UnaryHandler
}

func (t *serverTransport) Kind() transport.Kind { return transport.KindGRPC }

func (t *serverTransport) Endpoint() string { return t.endpoint }

func (t *serverTransport) Operation() string { return t.operation }

func (t *serverTransport) RequestHeader() transport.Header { return &t.req }

func (t *serverTransport) ReplyHeader() transport.Header { return &t.reply }

// invokeHandler is the innermost handler of every compiled chain: it
// calls gRPC's handler of the call, which reaches it through the context.
func invokeHandler(ctx context.Context, req any) (any, error) {
	if tr, ok := transport.FromServerContext(ctx); ok {
		if t, ok := tr.(*serverTransport); ok {
			return t.handler(ctx, req)
		}
	}
	// Only a middleware that replaced the call's transport gets here.
	return nil, status.Error(codes.Internal, "server chain lost the call's transport")
}

// requestHeader is the incoming metadata, read in place: Get copies only
// the values of its key (grpc/metadata.ValueFromIncomingContext), and the
// whole metadata is copied, once, only by a method that needs all of it or
// writes to it (Kratos' copied it on every call).
type requestHeader struct {
	ctx context.Context //nolint:containedctx // the call's, to read its metadata
	md  metadata.MD     // the copy, once made
}

func (h *requestHeader) all() metadata.MD {
	if h.md == nil {
		h.md, _ = metadata.FromIncomingContext(h.ctx)
		if h.md == nil {
			h.md = metadata.MD{}
		}
	}
	return h.md
}

func (h *requestHeader) Get(key string) string {
	var vals []string
	if h.md != nil {
		vals = h.md.Get(key)
	} else {
		vals = metadata.ValueFromIncomingContext(h.ctx, key)
	}
	if len(vals) > 0 {
		return vals[0]
	}
	return ""
}

func (h *requestHeader) Set(key, value string) { h.all().Set(key, value) }

func (h *requestHeader) Add(key, value string) { h.all().Append(key, value) }

func (h *requestHeader) Keys() []string { return keysOf(h.all()) }

func (h *requestHeader) Values(key string) []string {
	if h.md != nil {
		return h.md.Get(key)
	}
	return metadata.ValueFromIncomingContext(h.ctx, key)
}

// replyHeader is the metadata the server sends as the call's header;
// it is made by the first write.
type replyHeader metadata.MD

func (h *replyHeader) Get(key string) string {
	if vals := metadata.MD(*h).Get(key); len(vals) > 0 {
		return vals[0]
	}
	return ""
}

func (h *replyHeader) Set(key, value string) {
	if *h == nil {
		*h = replyHeader{}
	}
	metadata.MD(*h).Set(key, value)
}

func (h *replyHeader) Add(key, value string) {
	if *h == nil {
		*h = replyHeader{}
	}
	metadata.MD(*h).Append(key, value)
}

func (h *replyHeader) Keys() []string { return keysOf(metadata.MD(*h)) }

func (h *replyHeader) Values(key string) []string { return metadata.MD(*h).Get(key) }

func keysOf(md metadata.MD) []string {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}
