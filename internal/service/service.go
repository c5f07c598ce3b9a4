// Package service is the gRPC boundary: it turns proto requests into use
// case calls and domain errors into Kratos errors (a gRPC code and a
// reason). Detail that helps an operator but not a caller is logged here and
// kept out of the reply.
package service

import (
	"context"
	"errors"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"
	"github.com/google/wire"

	"github.com/rampart-go/rampart/internal/biz"
)

// UserProviderSet builds the user service's gRPC handlers.
var UserProviderSet = wire.NewSet(NewUserService)

// OrderProviderSet builds the order service's gRPC handlers.
var OrderProviderSet = wire.NewSet(NewOrderService)

// Reasons shared by both services for failures that are not domain errors.
const (
	reasonDependencyUnavailable = "DEPENDENCY_UNAVAILABLE"
	reasonDeadlineExceeded      = "DEADLINE_EXCEEDED"
	reasonCanceled              = "CANCELED"
	reasonInternal              = "INTERNAL"
)

// domainError maps one domain error to the Kratos error a caller receives.
type domainError struct {
	target   error
	toKratos func(msg string) *kerrors.Error
}

// toStatus maps err through the service's own table first, then the
// failures every service shares. An unknown error is a bug: it is logged in
// full and the caller sees only Internal.
func toStatus(ctx context.Context, logger *log.Helper, err error, table []domainError) error {
	for _, d := range table {
		if errors.Is(err, d.target) {
			return d.toKratos(err.Error())
		}
	}
	switch {
	case errors.Is(err, biz.ErrDependencyUnavailable):
		return kerrors.ServiceUnavailable(reasonDependencyUnavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return kerrors.GatewayTimeout(reasonDeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return kerrors.ClientClosed(reasonCanceled, err.Error())
	}
	logger.WithContext(ctx).Errorf("unmapped error: %v", err)
	return kerrors.InternalServer(reasonInternal, "internal error")
}
