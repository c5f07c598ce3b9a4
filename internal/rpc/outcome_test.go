package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/rpc"
)

func withReason(code codes.Code, reason string) error {
	st, err := status.New(code, "answered").WithDetails(&errdetails.ErrorInfo{Reason: reason})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

// Every code a server can answer, with an ErrorInfo as Rampart services
// send it: transient and the peer's fault exactly as the package doc says.
func TestEveryServerCode(t *testing.T) {
	transient := map[codes.Code]bool{codes.Unavailable: true, codes.ResourceExhausted: true, codes.DeadlineExceeded: true}
	fault := map[codes.Code]bool{
		codes.Unavailable: true, codes.ResourceExhausted: true, codes.DeadlineExceeded: true,
		codes.Internal: true, codes.Unknown: true, codes.DataLoss: true,
	}
	for c := codes.OK + 1; c <= codes.Unauthenticated; c++ {
		t.Run(c.String(), func(t *testing.T) {
			got := rpc.Classify(context.Background(), withReason(c, "SOME_REASON"))
			origin := rpc.OriginServer
			switch c {
			case codes.Canceled, codes.DeadlineExceeded: // the status grpc-go raises for this client's own context
				origin = rpc.OriginLocal
			}
			want := rpc.Outcome{Code: c, Origin: origin, Transient: transient[c], PeerFault: fault[c]}
			if got != want {
				t.Errorf("Classify = %+v, want %+v", got, want)
			}
		})
	}
}

func TestOrigins(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(live)
	cancel()
	expired, cancel2 := context.WithTimeout(live, 0)
	defer cancel2()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want rpc.Outcome
	}{
		{"success", live, nil, rpc.Outcome{Code: codes.OK}},
		{
			"reply over the receive limit", live, status.Error(codes.ResourceExhausted, "grpc: received message larger than max (5480000 vs. 4194304)"),
			rpc.Outcome{Code: codes.ResourceExhausted, Origin: rpc.OriginLocal},
		},
		{
			"request over the send limit", live, status.Error(codes.ResourceExhausted, "grpc: trying to send message larger than max (5000000 vs. 4194304)"),
			rpc.Outcome{Code: codes.ResourceExhausted, Origin: rpc.OriginLocal},
		},
		{
			"reply over the limit once decompressed", live, status.Error(codes.ResourceExhausted, "grpc: received message after decompression larger than max (9 vs. 8)"),
			rpc.Outcome{Code: codes.ResourceExhausted, Origin: rpc.OriginLocal},
		},
		{
			"reply that does not unmarshal", live, status.Error(codes.Internal, "grpc: failed to unmarshal the received message: proto: cannot parse"),
			rpc.Outcome{Code: codes.Internal, Origin: rpc.OriginLocal},
		},
		{
			"server shedding", live, withReason(codes.ResourceExhausted, "LOAD_SHED"),
			rpc.Outcome{Code: codes.ResourceExhausted, Origin: rpc.OriginServer, Transient: true, PeerFault: true},
		},
		{
			"connection refused", live, status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused\""),
			rpc.Outcome{Code: codes.Unavailable, Origin: rpc.OriginTransport, Transient: true, PeerFault: true},
		},
		{
			"breaker open here", live, withReason(codes.Unavailable, rpc.ReasonCircuitOpen),
			rpc.Outcome{Code: codes.Unavailable, Origin: rpc.OriginLocal},
		},
		{
			"reply too large, answered by a service", live, withReason(codes.ResourceExhausted, rpc.ReasonReplyTooLarge),
			rpc.Outcome{Code: codes.ResourceExhausted, Origin: rpc.OriginServer},
		},
		{
			"attempt deadline, call live", live, status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
			rpc.Outcome{Code: codes.DeadlineExceeded, Origin: rpc.OriginLocal, Transient: true, PeerFault: true},
		},
		{
			"call deadline", expired, status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
			rpc.Outcome{Code: codes.DeadlineExceeded, Origin: rpc.OriginLocal, PeerFault: true},
		},
		{
			"bare context deadline", live, fmt.Errorf("wait: %w", context.DeadlineExceeded),
			rpc.Outcome{Code: codes.DeadlineExceeded, Origin: rpc.OriginLocal, Transient: true, PeerFault: true},
		},
		{
			"caller cancelled, whatever the code", cancelled, status.Error(codes.Unavailable, "transport is closing"),
			rpc.Outcome{Code: codes.Canceled, Origin: rpc.OriginLocal},
		},
		{
			"caller's deadline ended during an outage", expired, status.Error(codes.Unavailable, "connection refused"),
			rpc.Outcome{Code: codes.Unavailable, Origin: rpc.OriginTransport, PeerFault: true},
		},
		{"bare cancellation", live, context.Canceled, rpc.Outcome{Code: codes.Canceled, Origin: rpc.OriginLocal}},
		{"no status at all", live, errors.New("boom"), rpc.Outcome{Code: codes.Unknown, Origin: rpc.OriginLocal, PeerFault: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rpc.Classify(tt.ctx, tt.err); got != tt.want {
				t.Errorf("Classify = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// PeerFault for the shapes errors take in a chain: wrapped, Kratos errors,
// bare context errors.
func TestPeerFaultOfWrappedAndKratosErrors(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{status.Error(codes.OK, ""), false},
		{status.Error(codes.Canceled, ""), false},
		{context.Canceled, false},
		{context.DeadlineExceeded, true},
		{fmt.Errorf("get user: %w", status.Error(codes.Unavailable, "")), true},
		{fmt.Errorf("get user: %w", status.Error(codes.NotFound, "")), false},
		{kerrors.ServiceUnavailable("DOWN", "down"), true},
		{kerrors.NotFound("USER_NOT_FOUND", "no such user"), false},
		{kerrors.ServiceUnavailable(rpc.ReasonCircuitOpen, "breaker open"), false},
		{errors.New("not a status"), true}, // Unknown
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v", tt.err), func(t *testing.T) {
			if got := rpc.Classify(context.Background(), tt.err).PeerFault; got != tt.want {
				t.Fatalf("Classify(%v).PeerFault = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
