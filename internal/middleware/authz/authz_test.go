package authz_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/transport"
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/leakcheck"
	"github.com/rampart-go/rampart/internal/middleware/authz"
	"github.com/rampart-go/rampart/internal/mtls"
	"github.com/rampart-go/rampart/internal/mtls/mtlstest"
	"github.com/rampart-go/rampart/internal/rpc"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

const getUser = "/user.v1.UserService/GetUser"

// intentions is an Authorizer over a fixed table of allowed callers of
// "user"; err, when set, is its answer to everything.
type intentions struct {
	allow map[string]bool
	err   error

	mu    sync.Mutex
	asked []string
}

func (f *intentions) Authorize(_ context.Context, caller, target string) (bool, string, error) {
	f.mu.Lock()
	f.asked = append(f.asked, caller+"->"+target)
	f.mu.Unlock()
	if f.err != nil {
		return false, "", f.err
	}
	if f.allow[caller] {
		return true, "Matched L4 intention: default/" + caller + " => default/user (Action: ALLOW)", nil
	}
	return false, "Matched L4 intention: default/" + caller + " => default/user (Precedence: 9, Action: DENY)", nil
}

type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) Log(level log.Level, kv ...any) error {
	var b strings.Builder
	b.WriteString(level.String())
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}

func (r *recorder) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

type fakeTransport struct{ transport.Transporter }

func (fakeTransport) Operation() string { return getUser }

// callFrom is the context of a call to GetUser over a connection whose
// verified client certificate names caller ("" for plaintext).
func callFrom(t *testing.T, caller string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	p := &peer.Peer{}
	if caller != "" {
		u, err := url.Parse("spiffe://td.consul/ns/default/dc/dc1/svc/" + caller)
		if err != nil {
			t.Fatal(err)
		}
		p.AuthInfo = credentials.TLSInfo{State: tls.ConnectionState{
			HandshakeComplete: true, PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{u}}},
		}}
	}
	return transport.NewServerContext(peer.NewContext(ctx, p), fakeTransport{})
}

func TestDecisions(t *testing.T) {
	tests := []struct {
		name       string
		caller     string
		authzErr   error
		wantCode   codes.Code
		wantReason string
		wantMsg    []string
		wantLog    []string
	}{
		{name: "allowed", caller: "order", wantCode: codes.OK},
		{name: "own identity, not asked", caller: "user", authzErr: errors.New("must not be asked"), wantCode: codes.OK},
		{
			name: "denied", caller: "billing", wantCode: codes.PermissionDenied, wantReason: rpc.ReasonPermissionDenied,
			wantMsg: []string{"billing may not call user", "Action: DENY"},
			wantLog: []string{"WARN", "msg=call denied", "caller=billing", "operation=" + getUser, "Action: DENY"},
		},
		{
			name: "no identity", wantCode: codes.PermissionDenied, wantReason: rpc.ReasonPermissionDenied,
			wantMsg: []string{"no verified service identity"},
			wantLog: []string{"WARN", "without a service identity", "operation=" + getUser},
		},
		{
			name: "authority down", caller: "order", authzErr: errors.New("dial tcp 127.0.0.1:8500: connection refused"),
			wantCode: codes.Unavailable, wantReason: rpc.ReasonAuthorizationUnavailable,
			wantMsg: []string{"cannot authorize order"},
			wantLog: []string{"ERROR", "caller=order", "connection refused"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &recorder{}
			a := &intentions{allow: map[string]bool{"order": true}, err: tt.authzErr}
			ran := false
			h := authz.Server("user", a, logs)(func(context.Context, any) (any, error) {
				ran = true
				return "reply", nil
			})
			reply, err := h(callFrom(t, tt.caller), nil)
			st := status.Convert(err)
			if st.Code() != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", st.Code(), err, tt.wantCode)
			}
			if tt.wantCode == codes.OK {
				if !ran || reply != "reply" {
					t.Fatalf("the handler did not answer: %v, %v", reply, err)
				}
				if logs.all() != "" {
					t.Errorf("an allowed call logged %q", logs.all())
				}
				if tt.caller == "user" && len(a.asked) != 0 {
					t.Errorf("the authorizer was asked %v for the server's own identity", a.asked)
				}
				return
			}
			if ran {
				t.Fatal("the handler ran for a refused call")
			}
			if got := rpc.Reason(st); got != tt.wantReason {
				t.Errorf("reason %q, want %q", got, tt.wantReason)
			}
			if tt.caller != "" {
				if md := kerrors.FromError(err).Metadata; md["caller"] != tt.caller {
					t.Errorf("metadata %v, want caller=%s", md, tt.caller)
				}
			}
			for _, want := range tt.wantMsg {
				if !strings.Contains(st.Message(), want) {
					t.Errorf("message %q lacks %q", st.Message(), want)
				}
			}
			for _, want := range tt.wantLog {
				if !strings.Contains(logs.all(), want) {
					t.Errorf("log %q lacks %q", logs.all(), want)
				}
			}
			if tt.caller == "" && len(a.asked) != 0 {
				t.Errorf("the authorizer was asked %v for a call with no identity", a.asked)
			}
		})
	}
}

// users answers GetUser for any caller that gets through.
type users struct {
	userv1.UnimplementedUserServiceServer
}

func (users) GetUser(_ context.Context, req *userv1.GetUserRequest) (*userv1.GetUserReply, error) {
	return &userv1.GetUserReply{User: &userv1.User{Id: req.GetId()}}, nil
}

// Through a real Kratos server over mTLS: the caller's identity reaches
// the middleware from the handshake, and the client sees PermissionDenied
// with its reason.
func TestOverMTLS(t *testing.T) {
	ca := mtlstest.NewCA(t, "11111111-2222-3333-4444-555555555555.consul")
	lis, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &intentions{allow: map[string]bool{"order": true}}
	srv := kgrpc.NewServer(kgrpc.Listener(lis), kgrpc.TLSConfig(mtls.ServerConfig(ca.Source(t, "user"))),
		kgrpc.Middleware(authz.Server("user", a, &recorder{})))
	userv1.RegisterUserServiceServer(srv, users{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Start(context.Background())
	}()
	t.Cleanup(func() {
		_ = srv.Stop(context.Background())
		<-done
	})

	for _, tt := range []struct {
		caller string
		want   codes.Code
	}{{"order", codes.OK}, {"billing", codes.PermissionDenied}} {
		conn, err := grpc.NewClient(lis.Addr().String(),
			grpc.WithTransportCredentials(credentials.NewTLS(mtls.ClientConfig(ca.Source(t, tt.caller), "user"))))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = userv1.NewUserServiceClient(conn).GetUser(ctx, &userv1.GetUserRequest{Id: "u1"})
		cancel()
		_ = conn.Close()
		if st := status.Convert(err); st.Code() != tt.want {
			t.Errorf("%s: %v, want %v", tt.caller, err, tt.want)
		} else if tt.want == codes.PermissionDenied && rpc.Reason(st) != rpc.ReasonPermissionDenied {
			t.Errorf("%s: reason %q on the wire", tt.caller, rpc.Reason(st))
		}
	}
	if got := strings.Join(a.asked, ","); got != "order->user,billing->user" {
		t.Errorf("asked %s", got)
	}
}
