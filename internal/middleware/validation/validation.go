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

	"github.com/rampart-go/rampart/internal/validate"
)

// Reason is the error reason of every validation failure.
const Reason = "INVALID_ARGUMENT"

type validator interface {
	Validate() error
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
	e := kerrors.BadRequest(Reason, err.Error())
	var fe *validate.FieldError
	if errors.As(err, &fe) {
		e = e.WithMetadata(map[string]string{"field": fe.Field})
	}
	return e
}
