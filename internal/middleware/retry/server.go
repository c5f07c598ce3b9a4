package retry

import (
	"context"

	"github.com/go-kratos/kratos/v2/middleware"

	"github.com/rampart-go/rampart/internal/rpc"
)

// chainStopKey marks a context whose outgoing calls must not be retried.
type chainStopKey struct{}

// Server returns the server middleware that implements the chain stop: when
// the incoming request is itself a retry (rpc.AttemptHeader above 1), the
// handler's context is marked so that Client makes exactly one attempt for
// every call the handler makes. Retrying at one hop only keeps an outage deep
// in the call graph from multiplying load at each hop above it. A missing or
// malformed header counts as a first attempt.
func Server() middleware.Middleware {
	return func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, req any) (any, error) {
			if rpc.Attempt(ctx) > 1 {
				ctx = context.WithValue(ctx, chainStopKey{}, struct{}{})
			}
			return next(ctx, req)
		}
	}
}

// chainStopped reports whether ctx was marked by Server.
func chainStopped(ctx context.Context) bool {
	return ctx.Value(chainStopKey{}) != nil
}
