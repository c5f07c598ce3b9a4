package telemetry

import "google.golang.org/grpc"

// What the external tests reach inside the package.
var (
	ParseTraceparent  = parseTraceparent
	FormatTraceparent = formatTraceparent
)

// UnaryServer is the interceptor ServerInterceptor installs, for tests
// that call it without a server.
func (t *Telemetry) UnaryServer() grpc.UnaryServerInterceptor { return t.rpcServer().unary }
