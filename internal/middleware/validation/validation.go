// Package validation is the server middleware that rejects a request whose
// Validate method fails, before the handler or any business logic runs. The
// answer is InvalidArgument naming the field, so it is never retried and
// never counts as a server failure.
package validation

import (
	"context"
	"errors"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/middleware"

	"github.com/rampart-go/rampart/internal/rpc"
)

type validator interface {
	Validate() error
}

// fieldError is a validation failure about one request field, such as
// internal/validate's FieldError. Declared here, not imported, so this
// policy depends on internal/rpc alone.
type fieldError interface {
	error
	FieldName() string
}

// Server returns the validation middleware.
func Server() middleware.Middleware {
	return func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, req any) (any, error) {
			v, ok := req.(validator)
			if !ok {
				return next(ctx, req)
			}
			if err := v.Validate(); err != nil {
				return nil, toInvalidArgument(err)
			}
			return next(ctx, req)
		}
	}
}

func toInvalidArgument(err error) error {
	e := kerrors.BadRequest(rpc.ReasonInvalidArgument, err.Error())
	if fe, ok := errors.AsType[fieldError](err); ok {
		e = e.WithMetadata(map[string]string{"field": fe.FieldName()})
	}
	return e
}
