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

// Operation is the full method of the call ctx belongs to, read from its
// Kratos transport: the outgoing call's when ctx carries one (a client
// middleware; its context descends from the handler's, so it carries the
// incoming request's too), else the incoming request's. Without a transport
// it is UnknownOperation.
func Operation(ctx context.Context) string {
	if tr, ok := transport.FromClientContext(ctx); ok {
		return tr.Operation()
	}
	if tr, ok := transport.FromServerContext(ctx); ok {
		return tr.Operation()
	}
	return UnknownOperation
}
