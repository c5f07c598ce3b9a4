package e2e

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/middleware/faults"
)

// TestStopWithAnOpenWatchAndCallsInFlight: a user instance has a
// grpc.health.v1 Watch open and slow GetUser calls in flight when it gets
// SIGTERM. The watcher sees NOT_SERVING and then its stream ends; every
// call in flight completes; the instance exits within its drain delay and
// the slowest call, not after stop_timeout with a forced stop.
func TestStopWithAnOpenWatchAndCallsInFlight(t *testing.T) {
	const (
		inFlight    = 8
		callDelay   = 1500 * time.Millisecond // longer than the drain: the calls outlive it
		stopTimeout = 10 * time.Second        // server.stop_timeout in configs/user.yaml
	)
	ctx := devstacktest.Context(t, time.Minute)
	s := startStack(t, ctx, 1, 0)
	victim := s.Instances("user")[0]
	conn := devstacktest.DialAddr(t, devstacktest.Certificates(t, s), victim.GRPCAddr, "user")
	users := userv1.NewUserServiceClient(conn)
	created, err := users.CreateUser(ctx, &userv1.CreateUserRequest{Name: "Stream", Email: "stream@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if first, recvErr := watch.Recv(); recvErr != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch answer %v, %v; want SERVING", first, recvErr)
	}
	setFaults(t, ctx, []*devstack.ServiceProc{victim}, map[string]faults.Fault{getUser: {Delay: &faults.Delay{Percent: 100, Duration: callDelay}}})

	var wg sync.WaitGroup
	errs := make([]error, inFlight)
	for i := range inFlight {
		wg.Go(func() {
			callCtx, cancel := context.WithTimeout(ctx, 2*callDelay+drainDelay)
			defer cancel()
			_, errs[i] = users.GetUser(callCtx, &userv1.GetUserRequest{Id: created.GetUser().GetId()})
		})
	}
	// The calls are in the handler (past the chain's fault injector) once
	// the injector has counted them.
	for serverAttempts(t, ctx, []*devstack.ServiceProc{victim}, getUser) < inFlight {
		sleepCtx(ctx, 10*time.Millisecond)
	}
	signalled := time.Now()
	if err := victim.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if next, recvErr := watch.Recv(); recvErr != nil || next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch answer after SIGTERM %v, %v; want NOT_SERVING", next, recvErr)
	}
	if _, recvErr := watch.Recv(); status.Code(recvErr) != codes.Canceled {
		t.Errorf("Watch after the drain: %v, want its stream ended (Canceled)", recvErr)
	}
	wg.Wait()
	if err := victim.Wait(stopTimeout + 5*time.Second); err != nil {
		t.Fatalf("instance exit: %v, want 0", err)
	}
	took := time.Since(signalled)
	t.Logf("exited %s after SIGTERM (drain %s, calls delayed %s, stop_timeout %s)", took.Round(time.Millisecond), drainDelay, callDelay, stopTimeout)
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d in flight at SIGTERM: %v, want it completed", i, err)
		}
	}
	if n := countInLog(t, victim.LogPath, "couldn't stop gracefully"); n > 0 || took >= stopTimeout {
		t.Errorf("stop was forced (log lines: %d, took %s, stop_timeout %s)", n, took, stopTimeout)
	}
}
