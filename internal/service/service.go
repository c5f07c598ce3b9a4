// Package service is the gRPC boundary every service shares: it turns
// domain errors into gRPC statuses carrying a reason, and answers the
// failures no domain owns (a dependency down or too large, a deadline, a
// cancellation, a bug). Detail that helps an operator but not a caller is
// logged here and kept out of the reply.
//
// Each service's handlers live in internal/service/<svc>: they turn proto
// requests into calls of that service's use cases and hand their errors to
// ToStatus with the service's own table of DomainError. The rule for the
// sub-packages: a service's package imports its own biz package, its own
// API and this one, never another service's biz or service package.
// Importers alias a service's package as <svc>svc (usersvc, ordersvc).
package service

import (
	"context"
	"errors"
	"strings"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/rampart-go/rampart/internal/biz"
	"github.com/rampart-go/rampart/internal/rpc"
)

// API is what a service serves: its gRPC service descriptor and the handlers
// behind it, and the generated grpc-gateway registration that serves the
// same methods as HTTP/JSON (Register<Svc>Handler from <svc>.pb.gw.go).
// Each service's provider set supplies one, so the server shell is the same
// code for every service.
type API struct {
	Desc *grpc.ServiceDesc
	Impl any
	// Gateway registers the HTTP/JSON routes of the proto's google.api.http
	// rules on mux, each calling conn: the instance's own gRPC port, so an
	// HTTP call meets the same server chain as a gRPC one.
	Gateway func(ctx context.Context, mux *runtime.ServeMux, conn *grpc.ClientConn) error
}

// Reasons every service answers with for failures that are not domain
// errors; a service's own API names the reasons of its domain errors.
const (
	ReasonDependencyUnavailable = "DEPENDENCY_UNAVAILABLE"
	ReasonDeadlineExceeded      = "DEADLINE_EXCEEDED"
	ReasonCanceled              = "CANCELED"
	ReasonInternal              = "INTERNAL"
)

// DomainError maps one domain error to the code and reason a caller
// receives; each service keeps a table of them. Kratos errors speak HTTP
// codes and cannot say AlreadyExists, so the boundary builds the gRPC status
// itself, with the reason in the same ErrorInfo detail Kratos uses:
// kerrors.Reason still reads it.
type DomainError struct {
	Target error // matched with errors.Is
	Code   codes.Code
	Reason string
	Field  string // set when the error is about one request field
}

func (d DomainError) status(msg string) error {
	var md map[string]string
	if d.Field != "" {
		md = map[string]string{"field": d.Field}
	}
	return rpc.Error(d.Code, d.Reason, msg, md)
}

// ToStatus maps err through the service's own table first, then the
// failures every service shares. The message is err's text, the use case's
// context included. An unknown error is a bug: it is logged in full and the
// caller sees only Internal.
func ToStatus(ctx context.Context, logger *log.Helper, err error, table []DomainError) error {
	for _, d := range table {
		if errors.Is(err, d.Target) {
			return d.status(err.Error())
		}
	}
	switch {
	case errors.Is(err, biz.ErrDependencyUnavailable):
		// The transport error names internal addresses: the log gets it, the
		// caller only the dependency's name. Warn rather than error: this
		// instance works, its dependency does not. It is one line per failed
		// call, like the access log's, so an outage multiplies the log by a
		// constant rather than flooding it.
		logger.WithContext(ctx).Warnf("dependency unavailable: %v", err)
		refuseRetry(ctx)
		return rpc.Error(codes.Unavailable, ReasonDependencyUnavailable, unavailableMessage(err), nil)
	case errors.Is(err, biz.ErrReplyTooLarge):
		// Not the dependency being down: it answered, too much. Asking again
		// gets the same reply, so the caller is told not to retry.
		logger.WithContext(ctx).Warnf("dependency reply too large: %v", err)
		refuseRetry(ctx)
		return rpc.Error(codes.ResourceExhausted, rpc.ReasonReplyTooLarge, replyTooLargeMessage(err), nil)
	case errors.Is(err, context.DeadlineExceeded):
		return rpc.Error(codes.DeadlineExceeded, ReasonDeadlineExceeded, err.Error(), nil)
	case errors.Is(err, context.Canceled):
		return rpc.Error(codes.Canceled, ReasonCanceled, err.Error(), nil)
	}
	logger.WithContext(ctx).Errorf("unmapped error: %v", err)
	return rpc.Error(codes.Internal, ReasonInternal, "internal error", nil)
}

// refuseRetry tells the caller not to retry this answer. This instance has
// already retried its dependency as far as its own policy allows; a caller
// retrying too would run that whole retry loop again per attempt, so
// attempts on the dependency would multiply with every hop (gRFC A6's
// negative pushback, which Rampart's retry and grpc-go's both honour).
func refuseRetry(ctx context.Context) {
	_ = grpc.SetTrailer(ctx, metadata.Pairs(rpc.PushbackTrailer, "-1")) // no stream in unit tests: nothing to tell
}

// replyTooLargeMessage keeps the use case's context ("get profile: list
// orders: order service") and drops grpc-go's byte counts.
func replyTooLargeMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, biz.ErrReplyTooLarge.Error()); i >= 0 {
		return msg[:i] + biz.ErrReplyTooLarge.Error()
	}
	return biz.ErrReplyTooLarge.Error()
}

// unavailableMessage names the dependency that is down, when the data layer
// said which, and nothing of the transport error.
func unavailableMessage(err error) string {
	if dep, ok := errors.AsType[*biz.DependencyError](err); ok {
		return dep.Dependency + " is unavailable"
	}
	return biz.ErrDependencyUnavailable.Error()
}
