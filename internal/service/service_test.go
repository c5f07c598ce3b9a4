package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/biz"
	"github.com/rampart-go/rampart/internal/rpc"
	"github.com/rampart-go/rampart/internal/telemetry"
)

func TestToStatus(t *testing.T) {
	var logged strings.Builder
	logger := log.NewHelper(log.NewStdLogger(&logged))
	wrap := func(err error) error { return fmt.Errorf("use case: %w", err) }
	tests := []struct {
		name   string
		err    error
		table  []domainError
		code   codes.Code
		reason string
	}{
		{"user not found", wrap(biz.ErrUserNotFound), userErrors, codes.NotFound, userv1.ErrorReason_USER_NOT_FOUND.String()},
		{"buyer not found", wrap(biz.ErrUserNotFound), orderErrors, codes.NotFound, orderv1.ErrorReason_BUYER_NOT_FOUND.String()},
		{"order not found", wrap(biz.ErrOrderNotFound), orderErrors, codes.NotFound, orderv1.ErrorReason_ORDER_NOT_FOUND.String()},
		{"key reused", wrap(biz.ErrIdempotencyKeyReused), orderErrors, codes.AlreadyExists, orderv1.ErrorReason_IDEMPOTENCY_KEY_REUSED.String()},
		{"bad quantity", wrap(biz.ErrInvalidQuantity), orderErrors, codes.InvalidArgument, orderv1.ErrorReason_INVALID_ARGUMENT.String()},
		{"dependency down", wrap(biz.ErrDependencyUnavailable), orderErrors, codes.Unavailable, reasonDependencyUnavailable},
		{"dependency reply too large", wrap(fmt.Errorf("order service: %w: %w", biz.ErrReplyTooLarge, errors.New("rpc error: grpc: received message larger than max"))), userErrors, codes.ResourceExhausted, rpc.ReasonReplyTooLarge},
		{"deadline", wrap(context.DeadlineExceeded), userErrors, codes.DeadlineExceeded, reasonDeadlineExceeded},
		{"caller gone", wrap(context.Canceled), userErrors, codes.Canceled, reasonCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toStatus(context.Background(), logger, tt.err, tt.table)
			if status.Code(got) != tt.code || kerrors.Reason(got) != tt.reason {
				t.Fatalf("toStatus = %v (code %v, reason %q), want %v %q", got, status.Code(got), kerrors.Reason(got), tt.code, tt.reason)
			}
		})
	}
	if strings.Contains(logged.String(), "unmapped") {
		t.Fatalf("mapped errors were logged as unmapped: %s", logged.String())
	}

	bug := errors.New("nil map write in repo at 0xdeadbeef")
	got := toStatus(context.Background(), logger, bug, userErrors)
	if status.Code(got) != codes.Internal || strings.Contains(kerrors.FromError(got).Message, "0xdeadbeef") {
		t.Fatalf("unmapped error = %v; want Internal without internal detail", got)
	}
	if !strings.Contains(logged.String(), "0xdeadbeef") {
		t.Fatalf("internal detail not logged: %q", logged.String())
	}
}

// TestUnavailableNamesOnlyTheDependency checks that a caller of a service
// whose peer is down learns which peer, not its address, and that the log
// keeps the transport error with the call's trace ID.
func TestUnavailableNamesOnlyTheDependency(t *testing.T) {
	var logged strings.Builder
	logger := log.NewHelper(telemetry.Logger(log.NewStdLogger(&logged)))
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0x17, 0xfb}, SpanID: trace.SpanID{0xdd}})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	transport := status.Error(codes.Unavailable,
		`last connection error: connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:33145: connect: connection refused"`)
	err := fmt.Errorf("create order: check buyer u1: %w", &biz.DependencyError{Dependency: "user service", Err: transport})

	got := toStatus(ctx, logger, err, orderErrors)
	if status.Code(got) != codes.Unavailable || kerrors.Reason(got) != reasonDependencyUnavailable {
		t.Fatalf("toStatus = %v, want Unavailable %s", got, reasonDependencyUnavailable)
	}
	if msg := status.Convert(got).Message(); msg != "user service is unavailable" {
		t.Errorf("reply message %q, want only the dependency's name", msg)
	}
	line := logged.String()
	for _, want := range []string{"WARN", sc.TraceID().String(), "create order: check buyer u1", "dial tcp 127.0.0.1:33145"} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}
	if n := strings.Count(line, "\n"); n != 1 {
		t.Errorf("logged %d lines, want 1:\n%s", n, line)
	}
}

// trailerStream records the trailer a handler sets.
type trailerStream struct {
	grpc.ServerTransportStream
	trailer metadata.MD
}

func (s *trailerStream) SetTrailer(md metadata.MD) error {
	s.trailer = metadata.Join(s.trailer, md)
	return nil
}

// A service that gave up on its dependency tells its caller not to retry
// (negative pushback); every other answer leaves the caller's policy alone.
func TestOnlyAGivenUpDependencyRefusesRetry(t *testing.T) {
	logger := log.NewHelper(log.NewStdLogger(io.Discard))
	for _, tt := range []struct {
		err  error
		want []string
	}{
		{&biz.DependencyError{Dependency: "user service", Err: errors.New("down")}, []string{"-1"}},
		{fmt.Errorf("order service: %w", biz.ErrReplyTooLarge), []string{"-1"}},
		{biz.ErrUserNotFound, nil},
		{context.DeadlineExceeded, nil},
		{errors.New("bug"), nil},
	} {
		st := &trailerStream{}
		_ = toStatus(grpc.NewContextWithServerTransportStream(context.Background(), st), logger, tt.err, orderErrors)
		if got := st.trailer.Get(rpc.PushbackTrailer); !slices.Equal(got, tt.want) {
			t.Errorf("%v: pushback trailer %q, want %q", tt.err, got, tt.want)
		}
	}
}
