package accesslog_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/transport"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/middleware/accesslog"
)

// fakeTransport carries the operation the middleware reads.
type fakeTransport struct{ transport.Transporter }

func (fakeTransport) Operation() string { return "/user.v1.UserService/GetUser" }

type line struct {
	level log.Level
	kv    []any
}

type recorder struct{ lines []line }

func (r *recorder) Log(level log.Level, kv ...any) error {
	r.lines = append(r.lines, line{level, kv})
	return nil
}

func (l line) String() string {
	var b strings.Builder
	for i := 0; i+1 < len(l.kv); i += 2 {
		b.WriteString(l.kv[i].(string) + "=")
		b.WriteString(strings.TrimSpace(strings.ReplaceAll(fmtValue(l.kv[i+1]), "\n", " ")) + " ")
	}
	return b.String()
}

func fmtValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return "<num>"
	default:
		return "?"
	}
}

func TestLogsOneLinePerCallWithoutTheRequest(t *testing.T) {
	secret := "ada-secret-email@example.com"
	req := &userv1.CreateUserRequest{Name: "Ada", Email: secret}
	tests := []struct {
		name      string
		err       error
		level     log.Level
		wantParts []string
	}{
		{"success", nil, log.LevelInfo, []string{"kind=server", "operation=/user.v1.UserService/GetUser", "code=OK"}},
		{
			"client error", kerrors.BadRequest("INVALID_ARGUMENT", "name: must not be empty"), log.LevelInfo,
			[]string{"code=InvalidArgument", "reason=INVALID_ARGUMENT", "error=name: must not be empty"},
		},
		{
			"server failure", status.Error(codes.Unavailable, "user service down"), log.LevelError,
			[]string{"code=Unavailable", "error=user service down"},
		},
		{"plain error is Unknown", errors.New("boom"), log.LevelError, []string{"code=Unknown", "error=boom"}},
		{"shed call", kerrors.New(429, "LOAD_SHED", "shed"), log.LevelDebug, []string{"code=ResourceExhausted", "reason=LOAD_SHED"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			h := accesslog.Server(rec)(func(context.Context, any) (any, error) { return "reply", tt.err })
			ctx := transport.NewServerContext(context.Background(), fakeTransport{})
			reply, err := h(ctx, req)
			if !errors.Is(err, tt.err) || (tt.err == nil && reply != "reply") {
				t.Fatalf("the middleware changed the outcome: %v, %v", reply, err)
			}
			if len(rec.lines) != 1 {
				t.Fatalf("%d lines, want 1", len(rec.lines))
			}
			got := rec.lines[0]
			if got.level != tt.level {
				t.Errorf("level %v, want %v", got.level, tt.level)
			}
			s := got.String()
			for _, part := range tt.wantParts {
				if !strings.Contains(s, part) {
					t.Errorf("line %q lacks %q", s, part)
				}
			}
			if strings.Contains(s, secret) || strings.Contains(s, "Ada") {
				t.Errorf("line %q contains the request", s)
			}
		})
	}
}

func TestClientSide(t *testing.T) {
	rec := &recorder{}
	h := accesslog.Client(rec)(func(context.Context, any) (any, error) { return nil, nil })
	if _, err := h(transport.NewClientContext(context.Background(), fakeTransport{}), nil); err != nil {
		t.Fatal(err)
	}
	if s := rec.lines[0].String(); !strings.Contains(s, "kind=client") || !strings.Contains(s, "operation=/user.v1.UserService/GetUser") {
		t.Fatalf("client line = %q", s)
	}
}

// Over mTLS the server line names the calling service, from the verified
// client certificate; a plaintext call has no caller key at all.
func TestServerLineNamesTheCaller(t *testing.T) {
	u, err := url.Parse("spiffe://td.consul/ns/default/dc/dc1/svc/order")
	if err != nil {
		t.Fatal(err)
	}
	mtlsPeer := &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{
		HandshakeComplete: true, PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{u}}},
	}}}
	for _, tt := range []struct {
		name string
		p    *peer.Peer
		err  error
		want string
	}{
		{"mTLS success", mtlsPeer, nil, "caller=order code=OK"},
		{"mTLS refusal", mtlsPeer, kerrors.Forbidden("PERMISSION_DENIED", "order may not call user"), "caller=order code=PermissionDenied reason=PERMISSION_DENIED"},
		{"plaintext", &peer.Peer{}, nil, "operation=/user.v1.UserService/GetUser code=OK"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			h := accesslog.Server(rec)(func(context.Context, any) (any, error) { return nil, tt.err })
			ctx := transport.NewServerContext(peer.NewContext(context.Background(), tt.p), fakeTransport{})
			_, _ = h(ctx, nil)
			if s := rec.lines[0].String(); !strings.Contains(s, tt.want) {
				t.Errorf("line %q lacks %q", s, tt.want)
			}
		})
	}
}

// The interceptor writes the middleware's line: the operation is the
// method gRPC calls, the code the call's final one.
func TestClientInterceptorWritesTheClientLine(t *testing.T) {
	for _, tt := range []struct {
		name  string
		err   error
		level log.Level
		want  string
	}{
		{"success", nil, log.LevelInfo, "kind=client operation=/user.v1.UserService/GetUser code=OK latency=<num>"},
		{"not found", status.Error(codes.NotFound, "no user"), log.LevelInfo, "code=NotFound reason= latency=<num> error=no user"},
		{"unavailable", status.Error(codes.Unavailable, "user service down"), log.LevelError, "code=Unavailable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return tt.err }
			err := accesslog.ClientInterceptor(rec)(context.Background(), "/user.v1.UserService/GetUser", nil, nil, nil, invoker)
			if !errors.Is(err, tt.err) {
				t.Fatalf("the interceptor changed the outcome: %v", err)
			}
			if len(rec.lines) != 1 || rec.lines[0].level != tt.level || !strings.Contains(rec.lines[0].String(), tt.want) {
				t.Fatalf("lines %v, want one at %v with %q", rec.lines, tt.level, tt.want)
			}
		})
	}
}

// leastAllocs is the least of three testing.AllocsPerRun, so a GC that
// empties a pool during one run is not charged to the calls.
func leastAllocs(f func()) float64 {
	least := testing.AllocsPerRun(100, f)
	for range 2 {
		least = min(least, testing.AllocsPerRun(100, f))
	}
	return least
}

// A successful call's line costs the interceptor five allocations with a
// logger that writes nowhere: the key/value slice, the operation and the
// latency as interface values (3), and Kratos' log.WithContext with the
// line its logger builds (2). As Kratos middleware, the same line cost
// Kratos' client transport two more per call, the middleware's closure and
// the chain it builds around it on every call, of which gRPC's chaining of
// one more interceptor takes one back (make bench: 256 -> 255 allocs/op).
func TestClientInterceptorAllocations(t *testing.T) {
	logger := log.NewStdLogger(io.Discard)
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	ic := accesslog.ClientInterceptor(logger)
	ctx := transport.NewClientContext(context.Background(), fakeTransport{})
	if got := leastAllocs(func() { _ = ic(ctx, "/user.v1.UserService/GetUser", nil, nil, nil, invoker) }); got != 5 {
		t.Errorf("%v allocations per call, want 5", got)
	}
}
