package rpc

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Origin is where a failed attempt's status was raised.
type Origin uint8

const (
	// OriginNone is the origin of a successful attempt.
	OriginNone Origin = iota
	// OriginServer means the server answered with the status.
	OriginServer
	// OriginTransport means no answer came: the connection failed, was
	// refused or reset, or the balancer had no instance to pick.
	OriginTransport
	// OriginLocal means this client raised the status itself: its deadline,
	// its caller's cancellation, a message size limit, its breaker.
	OriginLocal
)

func (o Origin) String() string {
	switch o {
	case OriginServer:
		return "server"
	case OriginTransport:
		return "transport"
	case OriginLocal:
		return "local"
	default:
		return "none"
	}
}

// Outcome is the classification of one attempt.
type Outcome struct {
	Code   codes.Code
	Origin Origin
	// Transient says another attempt (elsewhere or later) may succeed.
	Transient bool
	// PeerFault says the failure counts against the peer: the instance
	// that served the attempt and the dependency as a whole.
	PeerFault bool
}

// Messages grpc-go gives the statuses it raises itself for a message it
// will not send or accept, or cannot (un)marshal.
var localMessages = []string{
	"grpc: received message larger than max",
	"grpc: trying to send message larger than max",
	"grpc: received message after decompression larger than max",
	"grpc: failed to unmarshal the received message",
	"grpc: error while marshaling",
}

// Classify returns the outcome of an attempt that returned err, ctx being
// the caller's context (not the attempt's). Retry, the breaker, outlier
// ejection, the access log and the data layer's error mapping all read it,
// so they cannot disagree about whether a failure is worth another attempt
// or says anything about the peer.
//
// The classification, checked in this order:
//
//   - The caller cancelled: Canceled, local, final, no fault.
//   - A deadline of this client expired (the call's or the attempt's):
//     DeadlineExceeded, local, the peer's fault (it did not answer in time),
//     transient only while the caller's own context is live, i.e. when it
//     was the attempt's deadline.
//   - gRPC refused a message for its size, on either side of this client
//     (ResourceExhausted "grpc: received message larger than max …"), or could
//     not (un)marshal one: local, final, no fault. The peer answered; asking
//     again gets the same answer.
//   - This client's breaker rejected the call, or a server relayed its own
//     breaker's rejection (reason CIRCUIT_OPEN): final, no fault.
//   - A server's final answer (reason REPLY_TOO_LARGE): final, no fault.
//   - Unavailable with no detail: transport (the connection failed, was
//     refused or reset, or no instance could be picked), transient, the
//     peer's fault.
//   - Any other status came from the server: Unavailable and
//     ResourceExhausted are transient, and they, Internal, Unknown and
//     DataLoss are the peer's fault; every other code is a client error the
//     peer answered correctly.
//   - An error with no gRPC status is Unknown, local and the peer's fault,
//     as grpc-go itself would report it.
//
// Whatever the error, nothing is transient once the caller's own context
// has ended.
func Classify(ctx context.Context, err error) Outcome {
	if err == nil {
		return Outcome{Code: codes.OK}
	}
	o := classify(err)
	if ctx.Err() != nil {
		o.Transient = false
		if errors.Is(ctx.Err(), context.Canceled) {
			o = Outcome{Code: codes.Canceled, Origin: OriginLocal}
		}
	}
	return o
}

func classify(err error) Outcome {
	st, isStatus := status.FromError(err)
	switch {
	case errors.Is(err, context.Canceled) || (isStatus && st.Code() == codes.Canceled):
		return Outcome{Code: codes.Canceled, Origin: OriginLocal}
	case errors.Is(err, context.DeadlineExceeded) || (isStatus && st.Code() == codes.DeadlineExceeded):
		return Outcome{Code: codes.DeadlineExceeded, Origin: OriginLocal, Transient: true, PeerFault: true}
	case !isStatus:
		return Outcome{Code: codes.Unknown, Origin: OriginLocal, PeerFault: true}
	}
	code, msg := st.Code(), st.Message()
	for _, m := range localMessages {
		if strings.HasPrefix(msg, m) {
			return Outcome{Code: code, Origin: OriginLocal}
		}
	}
	switch reason := Reason(st); {
	case reason == ReasonCircuitOpen:
		return Outcome{Code: code, Origin: OriginLocal}
	case reason == ReasonReplyTooLarge:
		return Outcome{Code: code, Origin: OriginServer}
	case code == codes.Unavailable && len(st.Details()) == 0:
		return Outcome{Code: code, Origin: OriginTransport, Transient: true, PeerFault: true}
	}
	switch code {
	case codes.Unavailable, codes.ResourceExhausted:
		return Outcome{Code: code, Origin: OriginServer, Transient: true, PeerFault: true}
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return Outcome{Code: code, Origin: OriginServer, PeerFault: true}
	default:
		return Outcome{Code: code, Origin: OriginServer}
	}
}
