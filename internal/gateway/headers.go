package gateway

import (
	"context"
	"net/textproto"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// IdempotencyKeyHeader is the HTTP header whose value fills an empty
// idempotency_key field of the request message.
const IdempotencyKeyHeader = "Idempotency-Key"

// idempotencyKeyField is the request field IdempotencyKeyHeader fills, in
// any service's proto.
const idempotencyKeyField protoreflect.Name = "idempotency_key"

// forwarded are the headers the gateway passes to the gRPC call as metadata
// under their own names (lower case), not grpc-gateway's grpcgateway-
// prefix: the W3C trace context, which the server's OpenTelemetry handler
// reads from exactly these keys, and the idempotency key, which
// fillIdempotencyKey reads. Baggage is not among them: it is for a trace's
// own services, not for anyone on the public side to set.
var forwarded = map[string]bool{
	"Traceparent":        true,
	"Tracestate":         true,
	IdempotencyKeyHeader: true,
}

// matchHeader is the mux's incoming header matcher: the forwarded headers
// under their own names, the rest as grpc-gateway's default does (the
// permanent HTTP headers as grpcgateway-<Name>; Authorization, X-Forwarded-For
// and X-Forwarded-Host it adds itself).
func matchHeader(key string) (string, bool) {
	if key = textproto.CanonicalMIMEHeaderKey(key); forwarded[key] {
		return strings.ToLower(key), true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// idempotencyKeyMD is the metadata key matchHeader gives IdempotencyKeyHeader.
var idempotencyKeyMD = strings.ToLower(IdempotencyKeyHeader)

// fillIdempotencyKey is the gateway connection's interceptor: a request
// message with a string field idempotency_key that is empty takes the
// Idempotency-Key header's value, so a service whose proto carries the key
// in the body serves the HTTP convention too, with no code of its own. A key
// in the body wins; a message without the field ignores the header.
func fillIdempotencyKey(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if keys := metadata.ValueFromOutgoingContext(ctx, idempotencyKeyMD); len(keys) > 0 && keys[0] != "" {
		if m, ok := req.(proto.Message); ok {
			setIfEmpty(m.ProtoReflect(), idempotencyKeyField, keys[0])
		}
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// setIfEmpty sets m's singular string field name to v if it is empty.
func setIfEmpty(m protoreflect.Message, name protoreflect.Name, v string) {
	fd := m.Descriptor().Fields().ByName(name)
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.Cardinality() == protoreflect.Repeated {
		return
	}
	if m.Get(fd).String() == "" {
		m.Set(fd, protoreflect.ValueOfString(v))
	}
}
