package timeout_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/rampart-go/rampart/internal/middleware/timeout"
)

// call runs the interceptor with the given limit and returns the deadline
// the invoker saw, plus the window [before, after] around the call.
func call(ctx context.Context, t *testing.T, method string, limitFor func(string) time.Duration) (deadline time.Time, ok bool, before, after time.Time) {
	t.Helper()
	invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		deadline, ok = ctx.Deadline()
		return nil
	}
	before = time.Now()
	if err := timeout.Client(limitFor)(ctx, method, nil, nil, nil, invoker); err != nil {
		t.Fatal(err)
	}
	return deadline, ok, before, time.Now()
}

func TestLimitShorterThanCallerWins(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	const limit = 200 * time.Millisecond
	d, ok, before, after := call(ctx, t, "/a.A/M", func(string) time.Duration { return limit })
	if !ok || d.Before(before.Add(limit)) || d.After(after.Add(limit)) {
		t.Fatalf("deadline %v not within [%v, %v] + %v", d, before, after, limit)
	}
}

func TestCallerShorterThanLimitWins(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	callerDeadline, _ := ctx.Deadline()
	d, ok, _, _ := call(ctx, t, "/a.A/M", func(string) time.Duration { return time.Hour })
	if !ok || !d.Equal(callerDeadline) {
		t.Fatalf("deadline %v, want the caller's %v", d, callerDeadline)
	}
}

func TestNoLimitKeepsTheContext(t *testing.T) {
	if _, ok, _, _ := call(context.Background(), t, "/a.A/M", func(string) time.Duration { return 0 }); ok {
		t.Fatal("a zero limit set a deadline")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want, _ := ctx.Deadline()
	if d, _, _, _ := call(ctx, t, "/a.A/M", func(string) time.Duration { return 0 }); !d.Equal(want) {
		t.Fatalf("deadline %v, want the caller's %v untouched", d, want)
	}
}

func TestLimitIsPerMethod(t *testing.T) {
	limits := map[string]time.Duration{"/a.A/Fast": 100 * time.Millisecond, "/a.A/Slow": 3 * time.Second}
	for method, limit := range limits {
		d, ok, before, after := call(context.Background(), t, method, func(m string) time.Duration { return limits[m] })
		if !ok || d.Before(before.Add(limit)) || d.After(after.Add(limit)) {
			t.Fatalf("%s: deadline %v not within [%v, %v] + %v", method, d, before, after, limit)
		}
	}
}

// A caller whose deadline comes first, or no limit, costs no context: the
// interceptor passes the caller's on, allocating nothing. A limit that
// shortens the deadline costs the context the standard library makes.
func TestContextOnlyWhenTheDeadlineChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	for _, tt := range []struct {
		name  string
		limit time.Duration
		want  float64
	}{
		{"no limit", 0, 0},
		{"caller's deadline first", time.Hour, 0},
	} {
		ic := timeout.Client(func(string) time.Duration { return tt.limit })
		if got := testing.AllocsPerRun(100, func() { _ = ic(ctx, "/a.A/M", nil, nil, nil, invoker) }); got != tt.want {
			t.Errorf("%s: %v allocations per call, want %v", tt.name, got, tt.want)
		}
	}
	ic := timeout.Client(func(string) time.Duration { return time.Second })
	if got := testing.AllocsPerRun(100, func() { _ = ic(ctx, "/a.A/M", nil, nil, nil, invoker) }); got == 0 {
		t.Error("a limit before the caller's deadline made no context")
	}
}
