package data

import (
	"context"
	"errors"
	"testing"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/biz"
)

// errUnknownUser stands for the caller's own domain error that a peer's
// reason maps to.
var errUnknownUser = errors.New("unknown user")

var userReasons = map[string]error{userv1.ErrorReason_USER_NOT_FOUND.String(): errUnknownUser}

func TestPeerError(t *testing.T) {
	tests := []struct {
		name string
		in   error
		want error
	}{
		{"known reason becomes the domain error", kerrors.NotFound(userv1.ErrorReason_USER_NOT_FOUND.String(), "x"), errUnknownUser},
		{"unavailable peer", status.Error(codes.Unavailable, "connection refused"), biz.ErrDependencyUnavailable},
		{"shedding peer", status.Error(codes.ResourceExhausted, "shed"), biz.ErrDependencyUnavailable},
		{"reply over our receive limit", status.Error(codes.ResourceExhausted, "grpc: received message larger than max (5480000 vs. 4194304)"), biz.ErrReplyTooLarge},
		{"deadline", status.Error(codes.DeadlineExceeded, "late"), context.DeadlineExceeded},
		{"cancelled by our caller", status.Error(codes.Canceled, "gone"), context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PeerError("user service", tt.in, userReasons)
			if !errors.Is(got, tt.want) {
				t.Fatalf("PeerError(%v) = %v, want errors.Is %v", tt.in, got, tt.want)
			}
		})
	}
	// The caller may learn which dependency is down; the service layer
	// reads its name here, apart from the transport error.
	dep, ok := errors.AsType[*biz.DependencyError](PeerError("user service", status.Error(codes.Unavailable, "dial tcp 10.0.0.7:9000"), userReasons))
	if !ok || dep.Dependency != "user service" || status.Code(dep.Err) != codes.Unavailable {
		t.Fatalf("PeerError(Unavailable) = %#v, want a DependencyError naming user service around the status", dep)
	}
	// An unknown failure keeps its status so it is not mistaken for a
	// domain error or an outage.
	internal := status.Error(codes.Internal, "boom")
	got := PeerError("user service", internal, userReasons)
	if errors.Is(got, biz.ErrDependencyUnavailable) || errors.Is(got, errUnknownUser) || status.Code(errors.Unwrap(got)) != codes.Internal {
		t.Fatalf("PeerError(Internal) = %v", got)
	}
}
