package recovery_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/transport"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/middleware/recovery"
	"github.com/rampart-go/rampart/internal/rpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeTransport carries the operation the middleware reads.
type fakeTransport struct{ transport.Transporter }

func (fakeTransport) Operation() string { return "/user.v1.UserService/CreateUser" }

// recorder keeps every line as text, each value formatted with %v.
type recorder struct {
	lines  []string
	levels []log.Level
}

func (r *recorder) Log(level log.Level, kv ...any) error {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, "%v=%v ", kv[i], kv[i+1])
	}
	r.lines = append(r.lines, b.String())
	r.levels = append(r.levels, level)
	return nil
}

func TestPanicBecomesInternalWithoutLoggingTheRequest(t *testing.T) {
	const secret = "ada-secret-email@example.com"
	req := &userv1.CreateUserRequest{Name: "Ada", Email: secret}
	rec := &recorder{}
	h := recovery.Server(rec)(func(context.Context, any) (any, error) {
		panic("nil map write in handler")
	})
	ctx := transport.NewServerContext(context.Background(), fakeTransport{})

	reply, err := h(ctx, req)
	if reply != nil || status.Code(err) != codes.Internal || kerrors.Reason(err) != rpc.ReasonPanic {
		t.Fatalf("after a panic: reply %v, err %v (code %v, reason %q); want nil, Internal %s",
			reply, err, status.Code(err), kerrors.Reason(err), rpc.ReasonPanic)
	}
	if len(rec.lines) != 1 || rec.levels[0] != log.LevelError {
		t.Fatalf("logged %d lines at %v, want 1 at error: %q", len(rec.lines), rec.levels, rec.lines)
	}
	line := rec.lines[0]
	for _, want := range []string{
		"operation=/user.v1.UserService/CreateUser",
		"panic=nil map write in handler",
		"TestPanicBecomesInternalWithoutLoggingTheRequest", // the stack
	} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %q: %s", want, line)
		}
	}
	if strings.Contains(line, secret) || strings.Contains(line, "Ada") {
		t.Errorf("log line holds the request: %s", line)
	}
}

func TestNoPanicPassesThrough(t *testing.T) {
	rec := &recorder{}
	h := recovery.Server(rec)(func(context.Context, any) (any, error) { return "reply", nil })
	if reply, err := h(context.Background(), nil); reply != "reply" || err != nil {
		t.Fatalf("got %v, %v; want the handler's reply", reply, err)
	}
	if len(rec.lines) != 0 {
		t.Fatalf("logged without a panic: %q", rec.lines)
	}
}
