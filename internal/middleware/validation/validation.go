// Package validation is the server middleware that checks a request against
// the rules its proto declares (protovalidate's `buf.validate` options)
// before the handler or any business logic runs. The contract a caller sees
// is the one the hand-written validators had: InvalidArgument with reason
// INVALID_ARGUMENT, the message "<field path>: <why>", and the field path in
// the error's metadata (key "field", beside "rule", the violated rule's id),
// so a client or the HTTP gateway can point at the field. It is never
// retried and never counts as a server failure, since the retry, breaker and
// ejection policies read InvalidArgument as the caller's fault.
//
// Policy: the first violation in field order is reported (fail fast: a
// caller fixes one field at a time, and stopping early is cheaper); a
// request that is not a proto message passes. A rule that does not compile
// or cannot be evaluated is a bug in the proto, not in the request: the call
// fails with Internal and the cause is logged, once per call.
package validation

import (
	"context"
	"errors"
	"fmt"

	"buf.build/go/protovalidate"
	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/middleware"
	"google.golang.org/protobuf/proto"

	"github.com/rampart-go/rampart/internal/rpc"
)

// ReasonRuleBroken is the reason of the Internal error a call gets when its
// request type's rules cannot be compiled or evaluated.
const ReasonRuleBroken = "VALIDATION_RULE_BROKEN"

// Server returns the validation middleware. It compiles each request
// type's rules on the first call of that type and keeps them; logger
// receives broken rules.
func Server(logger log.Logger) (middleware.Middleware, error) {
	v, err := protovalidate.New(protovalidate.WithFailFast())
	if err != nil {
		return nil, fmt.Errorf("validation: %w", err)
	}
	h := log.NewHelper(logger)
	return func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, req any) (any, error) {
			msg, ok := req.(proto.Message)
			if !ok {
				return next(ctx, req)
			}
			if err := v.Validate(msg); err != nil {
				return nil, toError(h, msg, err)
			}
			return next(ctx, req)
		}
	}, nil
}

func toError(h *log.Helper, msg proto.Message, err error) error {
	verr, ok := errors.AsType[*protovalidate.ValidationError](err)
	if !ok || len(verr.Violations) == 0 {
		name := msg.ProtoReflect().Descriptor().FullName()
		h.Errorf("validation rules of %s are broken: %v", name, err)
		return kerrors.InternalServer(ReasonRuleBroken, "validation rules of "+string(name)+" are broken")
	}
	v := verr.Violations[0].Proto
	field := protovalidate.FieldPathString(v.GetField())
	return kerrors.BadRequest(rpc.ReasonInvalidArgument, field+": "+v.GetMessage()).
		WithMetadata(map[string]string{"field": field, "rule": v.GetRuleId()})
}
