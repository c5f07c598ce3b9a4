// Package accesslog writes one log line per call, on the server and on the
// client: the operation, the gRPC code and reason, the latency and, on the
// server over mTLS, the calling service. It
// replaces Kratos' logging middleware, which formats every request message
// as text (about ten allocations a call, and whatever personal data the
// request holds) before the logger can decide to drop the line.
//
// Policy: successes and client errors (InvalidArgument, NotFound, …) are
// logged at info; server-side failures (Unavailable, DeadlineExceeded,
// Internal, …) at error with the error's message, which names the field or
// the cause. Calls refused by load shedding are logged at debug: shedding is
// the server protecting itself, a line per refused call would add work
// exactly when there is none to spare, and rampart_shed_total counts them.
// The request body is never logged.
package accesslog

import (
	"context"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/middleware"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/rpc"
)

// Server returns the access log of incoming calls. A call over mTLS names
// its caller (caller=<service>, from the verified client certificate).
func Server(logger log.Logger) middleware.Middleware {
	return accessLog(logger, kindServer, rpc.ServerOperation, rpc.CallerService)
}

// Client returns the access log of outgoing calls as a Kratos middleware
// (one line per logical call, retries included). The client chains use
// ClientInterceptor, which writes the same line.
func Client(logger log.Logger) middleware.Middleware {
	return accessLog(logger, kindClient, rpc.ClientOperation, nil)
}

// ClientInterceptor returns the access log of outgoing calls as the
// outermost gRPC interceptor of a client chain: the line Client writes, one
// per logical call, retries included. As an interceptor it costs Kratos'
// client transport no middleware chain, which Kratos builds on every call
// (two allocations) when a client has any middleware at all.
func ClientInterceptor(logger log.Logger) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		start := time.Now()
		err := invoker(ctx, method, req, reply, cc, opts...)
		write(ctx, logger, kindClient, method, nil, start, err)
		return err
	}
}

// The kinds as interface values made once: a string converted per line
// would cost an allocation per call.
var kindServer, kindClient any = "server", "client"

func accessLog(logger log.Logger, kind any, operationOf func(context.Context) string,
	callerOf func(context.Context) (string, bool),
) middleware.Middleware {
	return func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, req any) (any, error) {
			start := time.Now()
			reply, err := next(ctx, req)
			write(ctx, logger, kind, operationOf(ctx), callerOf, start, err)
			return reply, err
		}
	}
}

// write logs the line of one call that started at start and ended with err.
func write(ctx context.Context, logger log.Logger, kind any, operation string,
	callerOf func(context.Context) (string, bool), start time.Time, err error,
) {
	latency := time.Since(start).Seconds()
	kv := make([]any, 0, 16)
	kv = append(kv, "kind", kind, "operation", operation)
	if callerOf != nil {
		if caller, ok := callerOf(ctx); ok {
			kv = append(kv, "caller", caller)
		}
	}
	l := log.WithContext(ctx, logger)
	if err == nil {
		_ = l.Log(log.LevelInfo, append(kv, "code", "OK", "latency", latency)...)
		return
	}
	st := status.Convert(err)
	reason := rpc.Reason(st)
	level := log.LevelInfo
	switch {
	case reason == rpc.ReasonLoadShed:
		level = log.LevelDebug
	case rpc.Classify(ctx, err).PeerFault:
		level = log.LevelError
	}
	_ = l.Log(level, append(kv, "code", st.Code().String(),
		"reason", reason, "latency", latency, "error", st.Message())...)
}
