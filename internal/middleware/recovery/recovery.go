// Package recovery is the server middleware that turns a panic in a handler
// into an Internal error, so a bug fails one call instead of the process.
//
// It replaces Kratos' recovery middleware, which logs the request with %+v:
// whatever personal data the request holds, the very thing the access log
// was written never to log. This one logs the panic value, the stack and
// the operation, never the request, at error with the call's trace ID.
//
// The code and message are those of Kratos' recovery, with its reason
// (rpc.ReasonPanic), so callers saw no change when this package replaced it.
//
// It sits right inside the access log, so a call that panicked still gets
// its access-log line, with the Internal code the caller saw.
package recovery

import (
	"context"
	"fmt"
	"runtime/debug"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/middleware"

	"github.com/rampart-go/rampart/internal/rpc"
)

// Server returns the recovery middleware, logging to logger.
func Server(logger log.Logger) middleware.Middleware {
	return func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, req any) (reply any, err error) {
			defer func() {
				rerr := recover()
				if rerr == nil {
					return
				}
				_ = log.WithContext(ctx, logger).Log(log.LevelError, "msg", "panic recovered", "operation", rpc.ServerOperation(ctx),
					"panic", fmt.Sprint(rerr), "stack", string(debug.Stack()))
				reply, err = nil, kerrors.InternalServer(rpc.ReasonPanic, "unknown request error")
			}()
			return next(ctx, req)
		}
	}
}
