package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// TestGracefulStopLeavesConsul stops one of two user instances with SIGTERM
// while a steady stream of calls goes through discovery: the instance must
// leave Consul's passing set within 2 s, exit 0, and no call may fail.
func TestGracefulStopLeavesConsul(t *testing.T) {
	const (
		maxDeregister = 2 * time.Second
		callRate      = 50 // calls per second
		callTimeout   = 2 * time.Second
		warmUp        = time.Second // stream before the signal
		coolDown      = time.Second // stream after the exit
	)
	ctx := devstacktest.Context(t, 60*time.Second)
	s := startStack(t, ctx, 2, 1)
	consul := stackConsul(t, s)
	clients := dialDemo(t, ctx, s)

	created, err := clients.User.CreateUser(ctx, &userv1.CreateUserRequest{Name: "Grace Hopper", Email: "grace@example.com"})
	if err != nil {
		t.Fatalf("create user: %v", err)
	}
	req := &userv1.GetUserProfileRequest{Id: created.GetUser().GetId()}

	// The stream is bounded twice: by its own context (10 s) and by stop.
	streamCtx, stopStream := context.WithTimeout(ctx, 10*time.Second)
	defer stopStream()
	st := startSteadyLoad(streamCtx, callRate, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		_, callErr := clients.User.GetUserProfile(ctx, req)
		return callErr
	})
	sleepCtx(ctx, warmUp)

	victim := s.Instances("user")[0]
	port := portOf(t, victim.GRPCAddr)
	signalled := time.Now()
	if err = victim.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	gone, err := waitGone(ctx, consul, "user", port, signalled.Add(maxDeregister+time.Second))
	if err != nil {
		t.Errorf("instance on port %d: %v", port, err)
	} else {
		took := gone.Sub(signalled)
		t.Logf("instance on port %d left Consul's passing set %s after SIGTERM", port, took.Round(time.Millisecond))
		if took > maxDeregister {
			t.Errorf("left the passing set after %s, want <= %s", took, maxDeregister)
		}
	}

	if err := victim.Wait(drainDelay + 5*time.Second); err != nil {
		t.Errorf("stopped instance: %v, want exit 0", err)
	}
	t.Logf("instance exited %s after SIGTERM", time.Since(signalled).Round(time.Millisecond))
	exited := time.Now()
	sleepCtx(ctx, coolDown)
	stopStream()
	res := st.wait()

	before, stopping, after := res.between(time.Time{}, signalled), res.between(signalled, exited), res.between(exited, time.Now())
	t.Logf("calls: %d before SIGTERM, %d while stopping, %d after exit; %d failed (by code %v)",
		len(before), len(stopping), len(after), len(res.failed()), res.failed().byCode())
	if len(res) == 0 {
		t.Fatal("no call was made")
	}
	if f := res.failed(); len(f) > 0 {
		t.Errorf("%d of %d calls failed during the stop, want 0; first: %v", len(f), len(res), f[0].err)
	}
	if len(after) == 0 || len(after.failed()) == len(after) {
		t.Error("no call succeeded after the instance exited")
	}
	// Without traffic on the stopped instance the zero above proves nothing.
	served := countInLog(t, victim.LogPath, "/user.v1.UserService/GetUserProfile")
	t.Logf("the stopped instance served %d of the calls", served)
	if served == 0 {
		t.Error("the stopped instance served none of the calls")
	}
	if left, err := passing(ctx, consul, "user"); err != nil || len(left) != 1 {
		t.Errorf("passing user instances after the stop: %d (%v), want 1", len(left), err)
	}
}

// waitGone polls Consul until no passing instance of name serves on port,
// and returns when it saw that first.
func waitGone(ctx context.Context, consul *api.Client, name string, port int, deadline time.Time) (time.Time, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for {
		entries, err := passing(ctx, consul, name)
		if err == nil && !servesOn(entries, port) {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("still passing in Consul: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func servesOn(entries []*api.ServiceEntry, port int) bool {
	for _, e := range entries {
		if e.Service.Port == port {
			return true
		}
	}
	return false
}

// countInLog counts the lines of the log at path that hold every needle.
func countInLog(t *testing.T, path string, needles ...string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(string(b)) {
		if !slices.ContainsFunc(needles, func(needle string) bool { return !strings.Contains(line, needle) }) {
			n++
		}
	}
	return n
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
