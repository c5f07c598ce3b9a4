package e2e

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
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
	ctx := testContext(t, 60*time.Second)
	s := startStack(t, ctx, 2, 1)
	consul := consulClient(t, s.ConsulAddr)
	clients := dialDemo(t, ctx, consul)

	created, err := clients.User.CreateUser(ctx, &userv1.CreateUserRequest{Name: "Grace Hopper", Email: "grace@example.com"})
	if err != nil {
		t.Fatalf("create user: %v", err)
	}
	req := &userv1.GetUserProfileRequest{Id: created.GetUser().GetId()}

	// The stream is bounded twice: by its own context (10 s) and by stop.
	streamCtx, stopStream := context.WithTimeout(ctx, 10*time.Second)
	defer stopStream()
	st := startCallStream(streamCtx, callRate, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		_, callErr := clients.User.GetUserProfile(ctx, req)
		return callErr
	})
	sleepCtx(ctx, warmUp)

	victim := s.Instances("user")[0]
	port := portOf(t, victim.GRPCAddr)
	st.setPhase(phaseStopping)
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
	st.setPhase(phaseAfterExit)
	sleepCtx(ctx, coolDown)
	stopStream()
	res := st.wait()

	t.Logf("calls: %s", res)
	if res.total() == 0 {
		t.Fatal("no call was made")
	}
	if n := res.failed(); n > 0 {
		t.Errorf("%d of %d calls failed during the stop, want 0; first errors:\n%s", n, res.total(), strings.Join(res.firstErrs, "\n"))
	}
	if res.ok[phaseAfterExit] == 0 {
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

// countInLog counts the lines of the log at path that contain needle.
func countInLog(t *testing.T, path, needle string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, needle) {
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

// phase is when a call started, relative to the stop.
type phase int32

const (
	phaseBefore    phase = iota // before SIGTERM
	phaseStopping               // from SIGTERM to the process's exit
	phaseAfterExit              // after the exit
	numPhases
)

var phaseNames = [numPhases]string{"before SIGTERM", "while stopping", "after exit"}

// callStream makes one call per tick, each in its own goroutine, so a slow
// call does not hold back the ones after it.
type callStream struct {
	phase atomic.Int32
	wg    sync.WaitGroup
	done  chan struct{}

	mu  sync.Mutex
	res streamResult
}

type streamResult struct {
	ok, fail  [numPhases]int
	byCode    map[string]int
	firstErrs []string
}

func (r streamResult) total() int  { return r.sum(r.ok) + r.failed() }
func (r streamResult) failed() int { return r.sum(r.fail) }

func (r streamResult) sum(a [numPhases]int) int {
	n := 0
	for _, v := range a {
		n += v
	}
	return n
}

func (r streamResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d made, %d failed", r.total(), r.failed())
	for p := range numPhases {
		fmt.Fprintf(&b, "; %s: %d ok, %d failed", phaseNames[p], r.ok[p], r.fail[p])
	}
	codes := make([]string, 0, len(r.byCode))
	for c, n := range r.byCode {
		codes = append(codes, fmt.Sprintf("%s=%d", c, n))
	}
	sort.Strings(codes)
	if len(codes) > 0 {
		fmt.Fprintf(&b, "; failures by code: %s", strings.Join(codes, " "))
	}
	return b.String()
}

// startCallStream calls call rate times a second until ctx ends.
func startCallStream(ctx context.Context, rate int, call func(context.Context) error) *callStream {
	st := &callStream{done: make(chan struct{}), res: streamResult{byCode: map[string]int{}}}
	go func() {
		defer close(st.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			p := phase(st.phase.Load())
			st.wg.Add(1)
			go func() {
				defer st.wg.Done()
				st.record(p, call(context.WithoutCancel(ctx)))
			}()
		}
	}()
	return st
}

func (st *callStream) setPhase(p phase) { st.phase.Store(int32(p)) }

func (st *callStream) record(p phase, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err == nil {
		st.res.ok[p]++
		return
	}
	st.res.fail[p]++
	st.res.byCode[status.Code(err).String()]++
	if len(st.res.firstErrs) < 5 {
		st.res.firstErrs = append(st.res.firstErrs, fmt.Sprintf("[%s] %v", phaseNames[p], err))
	}
}

// wait waits for the ticker to stop (its context must have ended) and for
// every call in flight, and returns the counts.
func (st *callStream) wait() streamResult {
	<-st.done
	st.wg.Wait()
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.res
}
