// Package authz is the server middleware that decides whether the calling
// service may call this one, from the caller's verified identity: the
// Consul service named by its mTLS client certificate (rpc.CallerService).
// An Authorizer gives the decision; in Rampart it is Consul's intentions
// (internal/consul's Authorizer).
//
// Policy:
//   - Installed only in mtls mode. A call without a verified service
//     identity (plaintext, or a certificate of the trust domain that names
//     no service) is refused with PermissionDenied: it has no identity to
//     authorize.
//   - A denied caller gets PermissionDenied with ErrorInfo reason
//     PERMISSION_DENIED, metadata caller=<service>, and a message naming
//     the caller and the Authorizer's reason (the matched intention). The
//     denial is logged at WARN with the caller's identity and the operation.
//     rpc.Classify counts it a client error: never retried, never a breaker
//     or ejection failure.
//   - No decision, because the authority did not answer and has no last
//     decision for the pair (internal/consul's Authorizer keeps serving
//     those through an agent outage), fails closed with Unavailable, reason
//     AUTHORIZATION_UNAVAILABLE, and no pushback: the outage is this
//     instance's (each host has its own agent), so the caller's retry may
//     go at once to another instance, and outlier ejection rightly counts
//     it against this one; if every agent is down, the retry budget bounds
//     the load. The first answer after it applies (the Authorizer's
//     contract).
//   - A call from the server's own service identity is allowed without
//     asking: intentions are between services, and a service's instances
//     share one identity. It is how an instance's HTTP/JSON gateway, which
//     dials the instance's own gRPC port with the instance's certificate,
//     gets through; the gateway's public listener is the edge, where HTTP
//     callers are not authenticated by mTLS.
//   - It runs before the handler and before load shedding, so a refused
//     call costs neither handler time nor shedding capacity, and after the
//     access log, which records the refusal with the caller.
package authz

import (
	"context"
	"fmt"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/middleware"
	"google.golang.org/grpc/codes"

	"github.com/rampart-go/rampart/internal/rpc"
)

// Authorizer decides whether the service caller may call the service
// target. allowed false with a nil err is a decision, with reason saying
// why; a non-nil err means no decision could be made.
type Authorizer interface {
	Authorize(ctx context.Context, caller, target string) (allowed bool, reason string, err error)
}

// Server returns the middleware of the service target (this server's own
// Consul service name), asking a, logging to logger.
func Server(target string, a Authorizer, logger log.Logger) middleware.Middleware {
	return func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, req any) (any, error) {
			caller, ok := rpc.CallerService(ctx)
			if !ok {
				_ = log.WithContext(ctx, logger).Log(log.LevelWarn, "msg", "call without a service identity refused",
					"operation", rpc.ServerOperation(ctx), "target", target)
				return nil, rpc.Error(codes.PermissionDenied, rpc.ReasonPermissionDenied,
					"no verified service identity: "+target+" accepts only calls over mTLS with a service certificate", nil)
			}
			if caller == target {
				return next(ctx, req)
			}
			allowed, reason, err := a.Authorize(ctx, caller, target)
			switch {
			case err != nil:
				_ = log.WithContext(ctx, logger).Log(log.LevelError, "msg", "authorization unavailable",
					"caller", caller, "operation", rpc.ServerOperation(ctx), "target", target, "error", err.Error())
				return nil, rpc.Error(codes.Unavailable, rpc.ReasonAuthorizationUnavailable,
					fmt.Sprintf("%s cannot authorize %s now: its authority did not answer", target, caller),
					map[string]string{"caller": caller})
			case !allowed:
				_ = log.WithContext(ctx, logger).Log(log.LevelWarn, "msg", "call denied",
					"caller", caller, "operation", rpc.ServerOperation(ctx), "target", target, "reason", reason)
				return nil, rpc.Error(codes.PermissionDenied, rpc.ReasonPermissionDenied,
					fmt.Sprintf("%s may not call %s: %s", caller, target, reason),
					map[string]string{"caller": caller})
			}
			return next(ctx, req)
		}
	}
}
