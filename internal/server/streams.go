package server

import (
	"context"

	"google.golang.org/grpc"
)

// Streams ends the long-lived streams an instance holds open (a
// grpc.health.v1 Watch from client-side health checking, Envoy or grpcurl; a
// reflection session) when it stops. GracefulStop waits for every stream,
// and a health watcher never hangs up on its own: one open Watch turned each
// graceful stop into a forced one after server.stop_timeout, which cut the
// unary calls still in flight too. App ends the streams after the drain
// delay, once watchers have seen NOT_SERVING, so GracefulStop waits only for
// the unary calls. A stream ended this way returns Canceled to its client.
type Streams struct {
	ctx context.Context
	end context.CancelFunc
}

// NewStreams returns a Streams whose End has not been called.
func NewStreams() *Streams {
	ctx, end := context.WithCancel(context.Background())
	return &Streams{ctx: ctx, end: end}
}

// Interceptor gives each stream a context that End cancels.
func (s *Streams) Interceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		defer context.AfterFunc(s.ctx, cancel)()
		return handler(srv, &endableStream{ServerStream: ss, ctx: ctx})
	}
}

// End cancels the context of every stream, open now or opened later.
func (s *Streams) End() { s.end() }

type endableStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (e *endableStream) Context() context.Context { return e.ctx }
