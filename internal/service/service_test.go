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

	"github.com/rampart-go/rampart/internal/biz"
	"github.com/rampart-go/rampart/internal/rpc"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// errThingNotFound stands for a service's domain error; the tables of the
// real services are tested beside their handlers.
var errThingNotFound = errors.New("thing not found")

var thingErrors = []DomainError{
	{Target: errThingNotFound, Code: codes.NotFound, Reason: "THING_NOT_FOUND", Field: "thing_id"},
}

func TestToStatus(t *testing.T) {
	var logged strings.Builder
	logger := log.NewHelper(log.NewStdLogger(&logged))
	wrap := func(err error) error { return fmt.Errorf("use case: %w", err) }
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
	}{
		{"domain error in the table", wrap(errThingNotFound), codes.NotFound, "THING_NOT_FOUND"},
		{"dependency down", wrap(biz.ErrDependencyUnavailable), codes.Unavailable, ReasonDependencyUnavailable},
		{"dependency reply too large", wrap(fmt.Errorf("order service: %w: %w", biz.ErrReplyTooLarge, errors.New("rpc error: grpc: received message larger than max"))), codes.ResourceExhausted, rpc.ReasonReplyTooLarge},
		{"deadline", wrap(context.DeadlineExceeded), codes.DeadlineExceeded, ReasonDeadlineExceeded},
		{"caller gone", wrap(context.Canceled), codes.Canceled, ReasonCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ToStatus(context.Background(), logger, tt.err, thingErrors)
			if status.Code(got) != tt.code || kerrors.Reason(got) != tt.reason {
				t.Fatalf("ToStatus = %v (code %v, reason %q), want %v %q", got, status.Code(got), kerrors.Reason(got), tt.code, tt.reason)
			}
		})
	}
	// A domain error's message is the use case's whole error; its field
	// travels in the ErrorInfo metadata.
	got := ToStatus(context.Background(), logger, wrap(errThingNotFound), thingErrors)
	if msg := status.Convert(got).Message(); msg != "use case: thing not found" {
		t.Errorf("message %q, want the wrapped error's text", msg)
	}
	if md := kerrors.FromError(got).Metadata; md["field"] != "thing_id" {
		t.Errorf("metadata %v, want field thing_id", md)
	}
	if strings.Contains(logged.String(), "unmapped") {
		t.Fatalf("mapped errors were logged as unmapped: %s", logged.String())
	}

	bug := errors.New("nil map write in repo at 0xdeadbeef")
	got = ToStatus(context.Background(), logger, bug, thingErrors)
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

	got := ToStatus(ctx, logger, err, thingErrors)
	if status.Code(got) != codes.Unavailable || kerrors.Reason(got) != ReasonDependencyUnavailable {
		t.Fatalf("ToStatus = %v, want Unavailable %s", got, ReasonDependencyUnavailable)
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
		{errThingNotFound, nil},
		{context.DeadlineExceeded, nil},
		{errors.New("bug"), nil},
	} {
		st := &trailerStream{}
		_ = ToStatus(grpc.NewContextWithServerTransportStream(context.Background(), st), logger, tt.err, thingErrors)
		if got := st.trailer.Get(rpc.PushbackTrailer); !slices.Equal(got, tt.want) {
			t.Errorf("%v: pushback trailer %q, want %q", tt.err, got, tt.want)
		}
	}
}
