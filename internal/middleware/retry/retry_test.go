package retry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/middleware/retry"
	"github.com/rampart-go/rampart/internal/rpc"
)

func TestClassification(t *testing.T) {
	circuitOpenOnWire, err := status.New(codes.Unavailable, "breaker open").
		WithDetails(&errdetails.ErrorInfo{Reason: rpc.ReasonCircuitOpen})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		// callerDone ends the caller's context during the attempt:
		// "cancel" cancels it, "deadline" gives it a deadline already past.
		callerDone string
		retried    bool
	}{
		{name: "Unavailable", err: unavailable(), retried: true},
		{name: "ResourceExhausted", err: status.Error(codes.ResourceExhausted, "shedding"), retried: true},
		{name: "DeadlineExceeded of the attempt, caller has time", err: status.Error(codes.DeadlineExceeded, "attempt timeout"), retried: true},
		{name: "wrapped Unavailable", err: fmt.Errorf("get user: %w", unavailable()), retried: true},
		{name: "Unavailable with another reason", err: kerrors.ServiceUnavailable("DRAINING", "going away"), retried: true},
		{name: "DeadlineExceeded of the caller", err: status.Error(codes.DeadlineExceeded, "total timeout"), callerDone: "deadline"},
		{name: "Unavailable after caller cancelled", err: unavailable(), callerDone: "cancel"},
		{name: "ResourceExhausted after caller deadline", err: status.Error(codes.ResourceExhausted, "shedding"), callerDone: "deadline"},
		{name: "InvalidArgument", err: status.Error(codes.InvalidArgument, "bad id")},
		{name: "PermissionDenied by the server's authorization", err: rpc.Error(codes.PermissionDenied, rpc.ReasonPermissionDenied, "order may not call user", nil)},
		{name: "authorization unavailable on one instance", err: rpc.Error(codes.Unavailable, rpc.ReasonAuthorizationUnavailable, "agent down", nil), retried: true},
		{name: "NotFound", err: status.Error(codes.NotFound, "no user")},
		{name: "AlreadyExists", err: status.Error(codes.AlreadyExists, "dup")},
		{name: "FailedPrecondition", err: status.Error(codes.FailedPrecondition, "state")},
		{name: "Internal", err: status.Error(codes.Internal, "bug")},
		{name: "Canceled by the server", err: status.Error(codes.Canceled, "canceled")},
		{name: "Unknown plain error", err: errors.New("boom")},
		{name: "CIRCUIT_OPEN from the breaker", err: kerrors.ServiceUnavailable(rpc.ReasonCircuitOpen, "breaker open")},
		{name: "CIRCUIT_OPEN as a gRPC status", err: circuitOpenOnWire.Err()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(filled(retry.Config{MaxAttempts: 3}), 0)
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			if tt.callerDone == "deadline" {
				ctx, cancel = context.WithDeadline(ctx, time.Now().Add(-time.Second))
				defer cancel()
			}
			inv := failing(tt.err)
			if tt.callerDone == "cancel" {
				inv.onCall = func(int) { cancel() }
			}

			err := h.call(ctx, getUser, inv)

			want := 1
			if tt.retried {
				want = 2
			}
			if inv.attempts() != want {
				t.Fatalf("attempts = %d, want %d", inv.attempts(), want)
			}
			if tt.retried && err != nil {
				t.Fatalf("err = %v, want the retry's success", err)
			}
			if !tt.retried && !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want the attempt's own error %v", err, tt.err)
			}
		})
	}
}

func TestMaxAttempts(t *testing.T) {
	tests := []struct {
		configured, want int
	}{
		{configured: 1, want: 1},
		{configured: 2, want: 2},
		{configured: 5, want: 5},
		{configured: 6, want: 5},
		{configured: 100, want: 5},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.configured), func(t *testing.T) {
			h := newHarness(filled(retry.Config{MaxAttempts: tt.configured}), 0)
			inv := failing(unavailable(), unavailable(), unavailable(), unavailable(), unavailable(), unavailable())

			err := h.call(testCtx(t), getUser, inv)

			if inv.attempts() != tt.want {
				t.Fatalf("attempts = %d, want %d", inv.attempts(), tt.want)
			}
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("err = %v, want the last Unavailable", err)
			}
		})
	}
}

func TestOnlySafeMethodsAreRetried(t *testing.T) {
	tests := []struct {
		method string
		want   int
	}{
		{getUser, 3},      // NO_SIDE_EFFECTS
		{createOrder, 3},  // IDEMPOTENT
		{createUser, 1},   // no idempotency_level
		{"/x.v1.X/Y", 1},  // not in the registry
		{"not-a-path", 1}, // malformed
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			h := newHarness(filled(retry.Config{}), 0)
			inv := failing(unavailable(), unavailable(), unavailable())
			_ = h.call(testCtx(t), tt.method, inv)
			if inv.attempts() != tt.want {
				t.Fatalf("attempts = %d, want %d", inv.attempts(), tt.want)
			}
		})
	}
}

func TestBackoffBoundsWithFullJitter(t *testing.T) {
	ms := time.Millisecond
	capped := filled(retry.Config{MaxAttempts: 5, InitialBackoff: 50 * ms, MaxBackoff: 300 * ms, Multiplier: 2})
	tests := []struct {
		name   string
		policy retry.Config
		jitter float64
		bounds []time.Duration // min(MaxBackoff, InitialBackoff*Multiplier^(n-1)) per retry
	}{
		{"rand=0 waits nothing", capped, 0, []time.Duration{50 * ms, 100 * ms, 200 * ms, 300 * ms}},
		{"rand=0.5 waits half", capped, 0.5, []time.Duration{50 * ms, 100 * ms, 200 * ms, 300 * ms}},
		{"rand->1 waits just under the bound", capped, almostOne, []time.Duration{50 * ms, 100 * ms, 200 * ms, 300 * ms}},
		{"defaults", filled(retry.Config{}), almostOne, []time.Duration{50 * ms, 100 * ms}},
		{"multiplier 3", filled(retry.Config{MaxAttempts: 4, InitialBackoff: 10 * ms, MaxBackoff: time.Second, Multiplier: 3}), almostOne, []time.Duration{10 * ms, 30 * ms, 90 * ms}},
		{"max below initial caps the first wait", filled(retry.Config{MaxAttempts: 3, InitialBackoff: 80 * ms, MaxBackoff: 20 * ms, Multiplier: 2}), almostOne, []time.Duration{20 * ms, 20 * ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(tt.policy, tt.jitter)
			inv := failing(unavailable(), unavailable(), unavailable(), unavailable(), unavailable())

			_ = h.call(testCtx(t), getUser, inv)

			got := h.clock.slept()
			if len(got) != len(tt.bounds) {
				t.Fatalf("slept %v, want %d waits", got, len(tt.bounds))
			}
			for i, bound := range tt.bounds {
				// Full jitter: wait = rand * bound, truncated to the nanosecond.
				want := time.Duration(tt.jitter * float64(bound))
				if got[i] != want || got[i] < 0 || (got[i] >= bound && bound > 0) {
					t.Errorf("wait %d = %v, want %v (bound %v)", i+1, got[i], want, bound)
				}
				if tt.jitter == almostOne && got[i] < bound-time.Nanosecond {
					t.Errorf("wait %d = %v, want just under %v", i+1, got[i], bound)
				}
			}
		})
	}
}

func TestNeverWaitsPastTheDeadline(t *testing.T) {
	const hour = time.Hour
	tests := []struct {
		name     string
		policy   retry.Config
		outcomes []outcome
		attempts int
	}{
		{
			name:     "backoff ending before the deadline is taken",
			policy:   filled(retry.Config{MaxAttempts: 2, InitialBackoff: hour / 2, MaxBackoff: hour}),
			outcomes: []outcome{{err: unavailable()}},
			attempts: 2,
		},
		{
			name:     "backoff that would cross the deadline returns at once",
			policy:   filled(retry.Config{MaxAttempts: 3, InitialBackoff: 2 * hour, MaxBackoff: 2 * hour}),
			outcomes: []outcome{{err: unavailable()}},
			attempts: 1,
		},
		{
			name:     "second backoff would cross: one retry, then the last error",
			policy:   filled(retry.Config{MaxAttempts: 5, InitialBackoff: 25 * time.Minute, MaxBackoff: hour, Multiplier: 2}),
			outcomes: []outcome{{err: unavailable()}, {err: unavailable()}, {err: unavailable()}},
			attempts: 2,
		},
		{
			name:     "pushback ending exactly at the deadline returns at once",
			policy:   filled(retry.Config{MaxAttempts: 3}),
			outcomes: []outcome{{err: unavailable(), pushback: []string{"3600000"}}},
			attempts: 1,
		},
		{
			name:     "pushback ending 1ms before the deadline is taken",
			policy:   filled(retry.Config{MaxAttempts: 3}),
			outcomes: []outcome{{err: unavailable(), pushback: []string{"3599999"}}},
			attempts: 2,
		},
		{
			name:     "pushback beyond any duration returns at once",
			policy:   filled(retry.Config{MaxAttempts: 3}),
			outcomes: []outcome{{err: unavailable(), pushback: []string{"99999999999999999"}}},
			attempts: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(tt.policy, almostOne)
			start := h.clock.Now()
			deadline := start.Add(hour)
			ctx, cancel := context.WithDeadline(t.Context(), deadline)
			defer cancel()
			inv := &fakeInvoker{outcomes: tt.outcomes}

			err := h.call(ctx, getUser, inv)

			if inv.attempts() != tt.attempts {
				t.Fatalf("attempts = %d, want %d", inv.attempts(), tt.attempts)
			}
			if wantErr := tt.attempts <= len(tt.outcomes); wantErr != (err != nil) {
				t.Fatalf("err = %v, want error %t", err, wantErr)
			}
			if !h.clock.Now().Before(deadline) {
				t.Fatalf("clock at %v after the call, past the deadline %v", h.clock.Now().Sub(start), hour)
			}
			if got := len(h.clock.slept()); got != tt.attempts-1 {
				t.Fatalf("slept %d times, want %d", got, tt.attempts-1)
			}
		})
	}
}

func TestPushback(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		values   []string
		attempts int
		wait     time.Duration // when retried; the jitter would give 0.9 * 50ms
	}{
		{name: "zero retries at once", err: unavailable(), values: []string{"0"}, attempts: 2, wait: 0},
		{name: "positive waits exactly that long", err: unavailable(), values: []string{"250"}, attempts: 2, wait: 250 * time.Millisecond},
		{name: "above MaxBackoff is still honoured", err: status.Error(codes.ResourceExhausted, "shed"), values: []string{"3000"}, attempts: 2, wait: 3 * time.Second},
		{name: "negative stops retrying", err: unavailable(), values: []string{"-1"}, attempts: 1},
		{name: "malformed stops retrying", err: unavailable(), values: []string{"soon"}, attempts: 1},
		{name: "empty stops retrying", err: unavailable(), values: []string{""}, attempts: 1},
		{name: "several values stop retrying", err: unavailable(), values: []string{"10", "20"}, attempts: 1},
		{name: "does not make a non-retryable code retryable", err: status.Error(codes.InvalidArgument, "bad"), values: []string{"10"}, attempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(filled(retry.Config{MaxAttempts: 3}), 0.9)
			inv := &fakeInvoker{outcomes: []outcome{{err: tt.err, pushback: tt.values}}}

			err := h.call(testCtx(t), getUser, inv)

			if inv.attempts() != tt.attempts {
				t.Fatalf("attempts = %d, want %d", inv.attempts(), tt.attempts)
			}
			if tt.attempts == 1 {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v, want success", err)
			}
			if got := h.clock.slept(); !slices.Equal(got, []time.Duration{tt.wait}) {
				t.Fatalf("slept %v, want [%v]", got, tt.wait)
			}
		})
	}
}

// A server-dictated wait restarts the exponential backoff, as in gRPC A6.
func TestPushbackResetsBackoff(t *testing.T) {
	h := newHarness(filled(retry.Config{MaxAttempts: 5, InitialBackoff: 10 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2}), 0.5)
	inv := &fakeInvoker{outcomes: []outcome{
		{err: unavailable()},
		{err: unavailable()},
		{err: unavailable(), pushback: []string{"7"}},
		{err: unavailable()},
	}}

	if err := h.call(testCtx(t), getUser, inv); err != nil {
		t.Fatal(err)
	}

	want := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 7 * time.Millisecond, 5 * time.Millisecond}
	if got := h.clock.slept(); !slices.Equal(got, want) {
		t.Fatalf("slept %v, want %v", got, want)
	}
}

func TestAttemptHeader(t *testing.T) {
	h := newHarness(filled(retry.Config{MaxAttempts: 4}), 0)
	ctx := metadata.AppendToOutgoingContext(testCtx(t), "x-caller", "order")
	inv := failing(unavailable(), status.Error(codes.ResourceExhausted, "shed"))

	if err := h.call(ctx, getUser, inv); err != nil {
		t.Fatal(err)
	}

	want := [][]string{{"1"}, {"2"}, {"3"}}
	if got := inv.headers(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("attempt headers %v, want %v", got, want)
	}
	for i, md := range inv.mds {
		if got := md.Get("x-caller"); !slices.Equal(got, []string{"order"}) {
			t.Fatalf("attempt %d carries x-caller %v, want [order] once", i+1, got)
		}
	}

	// A call that cannot be retried is still attempt 1.
	inv = failing(unavailable())
	_ = h.call(ctx, createUser, inv)
	if got := inv.headers(); !slices.EqualFunc(got, [][]string{{"1"}}, slices.Equal) {
		t.Fatalf("attempt headers of an unsafe method %v, want [[1]]", got)
	}
}

func TestBudgetRefusalReturnsAtOnce(t *testing.T) {
	h := newHarness(filled(retry.Config{MaxAttempts: 5}), 0)
	err := unavailable()
	inv := failing(err, err)
	// Other calls drain the budget while the first attempt is in flight.
	inv.onCall = func(int) { drain(h.budget) }

	got := h.call(testCtx(t), getUser, inv)

	if !errors.Is(got, err) {
		t.Fatalf("err = %v, want the original %v", got, err)
	}
	if inv.attempts() != 1 || len(h.clock.slept()) != 0 {
		t.Fatalf("attempts = %d, waits = %v, want 1 attempt and no wait", inv.attempts(), h.clock.slept())
	}
}

// Calls that can never retry neither deposit requests in the budget nor
// withdraw from it; only the floor is left afterwards.
func TestCallsThatCannotRetryLeaveTheBudgetAlone(t *testing.T) {
	h := newHarness(filled(retry.Config{}), 0)
	one := retry.Client("user", func(string) retry.Config { return filled(retry.Config{MaxAttempts: 1}) }, h.budget,
		retry.WithClock(h.clock))
	stopped := chainStoppedCtx(t, "2")
	for range 50 {
		_ = h.call(testCtx(t), createUser, failing(unavailable()))
		_ = h.call(stopped, getUser, failing(unavailable()))
		_ = one(testCtx(t), getUser, nil, nil, nil, failing(unavailable()).invoke)
	}

	allowed := 0
	for h.budget.TryRetry() {
		allowed++
	}
	if allowed != 100 {
		t.Fatalf("budget allows %d retries, want the floor alone (100)", allowed)
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	h := newHarness(filled(retry.Config{MaxAttempts: 3}), 0.5)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	h.clock.onSleep = cancel
	inv := failing(unavailable(), unavailable())

	err := h.call(ctx, getUser, inv)

	if status.Code(err) != codes.Canceled || inv.attempts() != 1 {
		t.Fatalf("err = %v after %d attempts, want Canceled after 1", err, inv.attempts())
	}
}

// A nil budget gets a default one instead of unlimited retries.
func TestNilBudget(t *testing.T) {
	ic := retry.Client("user", func(string) retry.Config { return filled(retry.Config{}) }, nil,
		retry.WithClock(newFakeClock()), retry.WithRand(func() float64 { return 0 }))
	inv := failing(unavailable())
	if err := ic(testCtx(t), getUser, nil, nil, nil, inv.invoke); err != nil || inv.attempts() != 2 {
		t.Fatalf("err = %v after %d attempts, want success after 2", err, inv.attempts())
	}
}

func TestPolicyIsAskedPerMethod(t *testing.T) {
	var asked []string
	policyFor := func(method string) retry.Config {
		asked = append(asked, method)
		if method == createOrder {
			return filled(retry.Config{MaxAttempts: 1})
		}
		return filled(retry.Config{MaxAttempts: 2})
	}
	ic := retry.Client("order", policyFor, retry.NewBudget(retry.DefaultBudgetConfig()),
		retry.WithClock(newFakeClock()), retry.WithRand(func() float64 { return 0 }))

	get, create := failing(unavailable(), unavailable()), failing(unavailable())
	_ = ic(testCtx(t), getUser, nil, nil, nil, get.invoke)
	_ = ic(testCtx(t), createOrder, nil, nil, nil, create.invoke)

	if get.attempts() != 2 || create.attempts() != 1 {
		t.Fatalf("attempts GetUser=%d CreateOrder=%d, want 2 and 1", get.attempts(), create.attempts())
	}
	if !slices.Equal(asked, []string{getUser, createOrder}) {
		t.Fatalf("policyFor asked for %v", asked)
	}
}

// noRetryAllocs is the allocation ceiling of a call whose first attempt
// succeeds: four for the attempt header (what metadata.AppendToOutgoingContext
// costs) and one for the trailer slot with its call options.
const noRetryAllocs = 5

func TestNoRetryPathAllocations(t *testing.T) {
	h := newHarness(filled(retry.Config{}), 0)
	ctx := testCtx(t)
	invoker := succeed
	_ = h.ic(ctx, getUser, nil, nil, nil, invoker) // warm the idempotency cache
	got := testing.AllocsPerRun(200, func() {
		_ = h.ic(ctx, getUser, nil, nil, nil, invoker)
	})
	if got > noRetryAllocs {
		t.Fatalf("%.0f allocs per successful call, want <= %d", got, noRetryAllocs)
	}
}

// BenchmarkClientNoRetry measures a call whose first attempt succeeds. The
// baseline sets the attempt header alone, the least any attempt costs, so
// the interceptor's own overhead is the difference within one run.
func BenchmarkClientNoRetry(b *testing.B) {
	ctx := context.Background()
	b.Run("baseline=header-only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = succeed(metadata.AppendToOutgoingContext(ctx, rpc.AttemptHeader, "1"), getUser, nil, nil, nil)
		}
	})
	cases := []struct{ name, method string }{
		{"safe=GetUser", getUser},
		{"unsafe=CreateUser", createUser},
	}
	for _, c := range cases {
		ic := retry.Client("user", func(string) retry.Config { return filled(retry.Config{}) }, retry.NewBudget(retry.DefaultBudgetConfig()))
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = ic(ctx, c.method, nil, nil, nil, succeed)
			}
		})
	}
}
