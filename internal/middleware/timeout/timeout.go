// Package timeout bounds client calls. The chain uses it twice: outermost
// for the whole logical call (retries included) and innermost for each
// attempt, so a hung instance costs one attempt rather than the whole budget.
//
// Policy: the effective deadline is the earlier of the configured limit and
// the caller's own deadline; context.WithTimeout keeps the earlier one, and
// gRPC sends it to the server as grpc-timeout, so the next hop inherits
// whatever is left. A limit of 0 leaves the context as it is, and so does a
// caller's deadline that is no later than the limit: a context that would
// change nothing is not made (it cost four to seven allocations a call).
package timeout

import (
	"context"
	"time"

	"google.golang.org/grpc"
)

// Client returns an interceptor that bounds each call to limitFor(method).
func Client(limitFor func(method string) time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		d := limitFor(method)
		if d <= 0 {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		deadline := time.Now().Add(d)
		if cur, ok := ctx.Deadline(); ok && !cur.After(deadline) {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}
