package rpc

import (
	"context"
	"strings"

	"github.com/go-kratos/kratos/v2/transport"
)

// UnknownOperation is what Operation returns for a context with no Kratos
// transport (only outside a real server or client, e.g. in unit tests). It
// cannot be mistaken for a method: every full method starts with "/".
const UnknownOperation = "unknown"

// SplitMethod splits a gRPC full method "/package.Service/Method" into
// "package.Service" and "Method". ok is false, and both are empty, unless
// fullMethod has exactly that form: the leading slash, a service and a
// method, and no other slash.
func SplitMethod(fullMethod string) (service, method string, ok bool) {
	name, ok := strings.CutPrefix(fullMethod, "/")
	if !ok {
		return "", "", false
	}
	service, method, ok = strings.Cut(name, "/")
	if !ok || service == "" || method == "" || strings.Contains(method, "/") {
		return "", "", false
	}
	return service, method, true
}

// ServerOperation is the full method of the incoming call ctx belongs to,
// read from its Kratos server transport, or UnknownOperation. Server
// middleware use it rather than a lookup that tries the outgoing side
// first: a miss walks the whole context chain, and through Kratos' merged
// contexts that costs two allocations per call.
func ServerOperation(ctx context.Context) string {
	if tr, ok := transport.FromServerContext(ctx); ok {
		return tr.Operation()
	}
	return UnknownOperation
}

// ClientOperation is the full method of the outgoing call ctx belongs to,
// read from its Kratos client transport, or UnknownOperation. A client
// middleware's context descends from the handler's, so it must not fall
// back to the incoming call's method.
func ClientOperation(ctx context.Context) string {
	if tr, ok := transport.FromClientContext(ctx); ok {
		return tr.Operation()
	}
	return UnknownOperation
}
