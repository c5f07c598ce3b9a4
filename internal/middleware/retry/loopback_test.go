package retry_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/middleware/retry"
	"github.com/rampart-go/rampart/internal/rpc"
)

// flakyUsers fails the first n GetUser calls with Unavailable, optionally
// with a pushback trailer, and records the attempt header of every call.
type flakyUsers struct {
	userv1.UnimplementedUserServiceServer

	mu       sync.Mutex
	n        int
	pushback string
	seen     []string
}

func (s *flakyUsers) GetUser(ctx context.Context, _ *userv1.GetUserRequest) (*userv1.GetUserReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	s.seen = append(s.seen, md.Get(rpc.AttemptHeader)...)
	if len(s.seen) > s.n {
		return &userv1.GetUserReply{User: &userv1.User{Id: "u1"}}, nil
	}
	if s.pushback != "" {
		if err := grpc.SetTrailer(ctx, metadata.Pairs("grpc-retry-pushback-ms", s.pushback)); err != nil {
			return nil, err
		}
	}
	return nil, status.Error(codes.Unavailable, "flaky")
}

func (s *flakyUsers) headers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// Over a real loopback connection: attempts reach the server with their
// header, the trailer carries pushback back, and waits use the real clock.
func TestRetryOverLoopback(t *testing.T) {
	tests := []struct {
		name     string
		failures int
		pushback string
		wantCode codes.Code
		want     []string
	}{
		{name: "two failures then success", failures: 2, wantCode: codes.OK, want: []string{"1", "2", "3"}},
		{name: "attempts run out", failures: 5, wantCode: codes.Unavailable, want: []string{"1", "2", "3"}},
		{name: "pushback 1ms is a retry", failures: 1, pushback: "1", wantCode: codes.OK, want: []string{"1", "2"}},
		{name: "negative pushback stops", failures: 1, pushback: "-1", wantCode: codes.Unavailable, want: []string{"1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &flakyUsers{n: tt.failures, pushback: tt.pushback}
			client := loopback(t, srv, retry.Client("user",
				func(string) retry.Config {
					return filled(retry.Config{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
				},
				retry.NewBudget(retry.BudgetConfig{Ratio: 0.2, MinPerSecond: 10})))

			_, err := client.GetUser(testCtx(t), &userv1.GetUserRequest{Id: "u1"})

			if status.Code(err) != tt.wantCode {
				t.Fatalf("err = %v, want code %v", err, tt.wantCode)
			}
			if got := srv.headers(); !slices.Equal(got, tt.want) {
				t.Fatalf("server saw attempt headers %v, want %v", got, tt.want)
			}
		})
	}
}

// loopback serves srv on 127.0.0.1 and returns a client whose calls go
// through ic; both are stopped when the test ends.
func loopback(t *testing.T, srv userv1.UserServiceServer, ic grpc.UnaryClientInterceptor) userv1.UserServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(serve(t, srv),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(), // only Rampart's retry may repeat a call
		grpc.WithUnaryInterceptor(ic),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return userv1.NewUserServiceClient(conn)
}

// serve serves srv on 127.0.0.1 until the test ends and returns its address.
func serve(t *testing.T, srv userv1.UserServiceServer) string {
	t.Helper()
	lis, err := (&net.ListenConfig{}).Listen(testCtx(t), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	userv1.RegisterUserServiceServer(s, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return lis.Addr().String()
}

// bigUsers answers every GetUser with a reply of about size bytes.
type bigUsers struct {
	userv1.UnimplementedUserServiceServer
	size  int
	mu    sync.Mutex
	calls int
}

func (s *bigUsers) GetUser(context.Context, *userv1.GetUserRequest) (*userv1.GetUserReply, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	return &userv1.GetUserReply{User: &userv1.User{Id: "u1", Name: strings.Repeat("x", s.size)}}, nil
}

// A reply over the client's receive limit fails with ResourceExhausted that
// grpc-go raised here, not the server: the server answered, and asking
// again gets the same reply, so it is never retried.
func TestReplyOverTheReceiveLimitIsNotRetried(t *testing.T) {
	srv := &bigUsers{size: 4 << 10}
	client := loopback(t, srv, retry.Client("user",
		func(string) retry.Config {
			return filled(retry.Config{MaxAttempts: 3, InitialBackoff: time.Millisecond})
		},
		retry.NewBudget(retry.BudgetConfig{Ratio: 0.2, MinPerSecond: 10})))

	_, err := client.GetUser(testCtx(t), &userv1.GetUserRequest{Id: "u1"}, grpc.MaxCallRecvMsgSize(1<<10))

	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("err = %v, want ResourceExhausted from the receive limit", err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.calls != 1 {
		t.Fatalf("server answered %d attempts, want 1: a local limit was retried", srv.calls)
	}
}
