package rpc_test

import (
	"errors"
	"fmt"
	"maps"
	"testing"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/rpc"
)

func TestError(t *testing.T) {
	tests := []struct {
		name   string
		code   codes.Code
		reason string
		md     map[string]string
	}{
		{"reason and metadata", codes.Unavailable, rpc.ReasonCircuitOpen, map[string]string{"target": "user", "method": "/user.v1.UserService/GetUser"}},
		{"reason only", codes.ResourceExhausted, rpc.ReasonLoadShed, nil},
		{"no reason", codes.Internal, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := rpc.Error(tt.code, tt.reason, "the message", tt.md)
			st, ok := status.FromError(err)
			if !ok || st.Code() != tt.code || st.Message() != "the message" {
				t.Fatalf("Error = %v, want %v with the message", err, tt.code)
			}
			if got := rpc.Reason(st); got != tt.reason {
				t.Fatalf("Reason = %q, want %q", got, tt.reason)
			}
			// Kratos reads the same detail, so its callers see the reason too.
			ke := kerrors.FromError(err)
			if ke.Reason != tt.reason || !maps.Equal(ke.Metadata, tt.md) {
				t.Fatalf("kratos sees reason %q metadata %v, want %q %v", ke.Reason, ke.Metadata, tt.reason, tt.md)
			}
		})
	}
	t.Run("OK is no error", func(t *testing.T) {
		if err := rpc.Error(codes.OK, "SOME_REASON", "fine", nil); err != nil {
			t.Fatalf("Error(OK) = %v, want nil", err)
		}
	})
}

func TestReason(t *testing.T) {
	twoInfos, err := status.New(codes.Aborted, "m").WithDetails(
		&errdetails.RetryInfo{}, &errdetails.ErrorInfo{Reason: "FIRST"}, &errdetails.ErrorInfo{Reason: "SECOND"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		st   *status.Status
		want string
	}{
		{"no details", status.New(codes.Unavailable, "m"), ""},
		{"the first ErrorInfo, past other details", twoInfos, "FIRST"},
		{"a Kratos error", status.Convert(kerrors.NotFound("USER_NOT_FOUND", "m")), "USER_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rpc.Reason(tt.st); got != tt.want {
				t.Fatalf("Reason = %q, want %q", got, tt.want)
			}
		})
	}
}

// Info hands over the metadata with the reason: a Kratos error's field, as
// the validation middleware sets it, arrives whole.
func TestInfo(t *testing.T) {
	ke := kerrors.BadRequest(rpc.ReasonInvalidArgument, "name: must not be blank").WithMetadata(map[string]string{"field": "name"})
	info := rpc.Info(status.Convert(ke))
	if info.GetReason() != rpc.ReasonInvalidArgument || info.GetMetadata()["field"] != "name" {
		t.Fatalf("Info = %v, want reason %s with metadata field=name", info, rpc.ReasonInvalidArgument)
	}
	if info := rpc.Info(status.New(codes.Unavailable, "m")); info != nil {
		t.Fatalf("Info of a status without details = %v, want nil", info)
	}
}

func TestCodeName(t *testing.T) {
	for code, want := range map[codes.Code]string{
		codes.OK:                "OK",
		codes.InvalidArgument:   "INVALID_ARGUMENT",
		codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
		codes.Canceled:          "CANCELLED",
		codes.Code(42):          "CODE(42)",
	} {
		if got := rpc.CodeName(code); got != want {
			t.Errorf("CodeName(%d) = %q, want %q", code, got, want)
		}
	}
}

func TestIsCircuitOpen(t *testing.T) {
	open := rpc.Error(codes.Unavailable, rpc.ReasonCircuitOpen, "circuit breaker open for user /user.v1.UserService/GetUser", nil)
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"this client's breaker", open, true},
		{"wrapped", fmt.Errorf("get user: %w", open), true},
		{"relayed by a server's Kratos error", kerrors.ServiceUnavailable(rpc.ReasonCircuitOpen, "breaker open"), true},
		{"another reason", rpc.Error(codes.Unavailable, rpc.ReasonLoadShed, "m", nil), false},
		{"the reason with another code", rpc.Error(codes.Internal, rpc.ReasonCircuitOpen, "m", nil), false},
		{"Unavailable without detail", status.Error(codes.Unavailable, "connection refused"), false},
		{"no status", errors.New("boom"), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rpc.IsCircuitOpen(tt.err); got != tt.want {
				t.Fatalf("IsCircuitOpen(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
