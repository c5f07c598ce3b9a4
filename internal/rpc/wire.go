package rpc

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/go-kratos/kratos/v2/transport"
	"google.golang.org/grpc/metadata"
)

// AttemptHeader is the outgoing metadata key carrying the 1-based attempt
// number of a call: retry writes it, and a server that sees a number above
// 1 makes a single attempt for each call it makes in turn (the chain stop).
const AttemptHeader = "x-rampart-attempt"

// PushbackTrailer is gRFC A6's retry pushback: a server's wait before the
// next attempt in milliseconds, or, negative, a request not to retry.
const PushbackTrailer = "grpc-retry-pushback-ms"

// ErrorInfo reasons Rampart's own middleware answers with. A service's
// domain reasons belong to the service.
const (
	// ReasonCircuitOpen marks a call a client-side breaker rejected, or a
	// probe it let through that failed while it was rejecting.
	ReasonCircuitOpen = "CIRCUIT_OPEN"
	// ReasonReplyTooLarge marks a service's answer that its dependency's
	// reply exceeded the message size it accepts: final, not a failure of
	// the service.
	ReasonReplyTooLarge = "REPLY_TOO_LARGE"
	// ReasonLoadShed marks a request the server's load shedder refused
	// before the handler ran.
	ReasonLoadShed = "LOAD_SHED"
	// ReasonFaultInjected marks an abort injected by the faults middleware.
	ReasonFaultInjected = "FAULT_INJECTED"
	// ReasonPanic marks a call whose handler panicked. It is Kratos'
	// recovery reason, so callers saw no change when Rampart replaced it.
	ReasonPanic = "UNKNOWN"
	// ReasonInvalidArgument marks a request its Validate method refused.
	ReasonInvalidArgument = "INVALID_ARGUMENT"
	// ReasonPermissionDenied marks a call the server's authorization
	// refused (PermissionDenied): the caller's verified identity may not
	// call this service, or the call came without one. Final: another
	// attempt gets the same answer until someone changes the intention.
	ReasonPermissionDenied = "PERMISSION_DENIED"
	// ReasonAuthorizationUnavailable marks a call the server could not
	// authorize because its authority (the Consul agent) did not answer
	// (Unavailable): the server fails closed, and another instance, with
	// its own agent, may well answer.
	ReasonAuthorizationUnavailable = "AUTHORIZATION_UNAVAILABLE"
)

// WithAttempt returns ctx with AttemptHeader set to attempt in its outgoing
// metadata. Start every attempt from the caller's context, so the headers
// of earlier attempts are not carried over.
func WithAttempt(ctx context.Context, attempt int) context.Context {
	// strconv keeps numbers below 100 in a table: no allocation.
	return metadata.AppendToOutgoingContext(ctx, AttemptHeader, strconv.Itoa(attempt))
}

// Attempt is the attempt number the incoming request carries in
// AttemptHeader, read from ctx's Kratos server transport. A request with
// no transport, or a missing or malformed header, is a first attempt.
func Attempt(ctx context.Context) int {
	if tr, ok := transport.FromServerContext(ctx); ok {
		if n, err := strconv.Atoi(tr.RequestHeader().Get(AttemptHeader)); err == nil && n > 1 {
			return n
		}
	}
	return 1
}

// maxPushbackMs keeps a pushback's wait within time.Duration.
const maxPushbackMs = int64(math.MaxInt64 / time.Millisecond)

// Pushback reads the server's retry pushback from an attempt's trailer: the
// wait it dictated and whether it dictated one. ok is false when the server
// forbids a retry, with a negative, malformed or repeated value (gRFC A6).
// A wait longer than time.Duration holds is capped at the longest one.
func Pushback(trailer metadata.MD) (wait time.Duration, pushedBack, ok bool) {
	vals := trailer[PushbackTrailer]
	switch len(vals) {
	case 0:
		return 0, false, true
	case 1:
		ms, err := strconv.ParseInt(vals[0], 10, 64)
		if err != nil || ms < 0 {
			return 0, false, false
		}
		return time.Duration(min(ms, maxPushbackMs)) * time.Millisecond, true, true
	default:
		return 0, false, false
	}
}
