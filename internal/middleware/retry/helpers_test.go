package retry_test

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	// The descriptors IsSafeToRetry reads come from the generated packages.
	_ "github.com/rampart-go/rampart/api/order/v1"
	_ "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/middleware/retry"
	"github.com/rampart-go/rampart/internal/rpc"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	getUser     = "/user.v1.UserService/GetUser"
	createUser  = "/user.v1.UserService/CreateUser"
	createOrder = "/order.v1.OrderService/CreateOrder"
)

// almostOne is the largest jitter sample below 1.
var almostOne = math.Nextafter(1, 0)

func unavailable() error { return status.Error(codes.Unavailable, "instance down") }

// testCtx returns a context that ends with the test and within 10 s.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fakeClock stands still until Sleep advances it; it never waits.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	sleeps  []time.Duration
	onSleep func() // runs at the start of every Sleep
}

// newFakeClock starts at the wall clock's present so that contexts with a
// real deadline and the fake clock agree on how much time is left.
func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if c.onSleep != nil {
		c.onSleep()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *fakeClock) slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// outcome is what one attempt of a fakeInvoker returns.
type outcome struct {
	err      error
	pushback []string // grpc-retry-pushback-ms trailer values, if any
}

// fakeInvoker plays one outcome per attempt, then succeeds, and records the
// outgoing metadata of every attempt.
type fakeInvoker struct {
	outcomes []outcome
	onCall   func(attempt int) // runs before the outcome is returned
	mds      []metadata.MD
}

func failing(errs ...error) *fakeInvoker {
	f := &fakeInvoker{}
	for _, err := range errs {
		f.outcomes = append(f.outcomes, outcome{err: err})
	}
	return f
}

func (f *fakeInvoker) attempts() int { return len(f.mds) }

// headers returns the attempt header values each attempt carried.
func (f *fakeInvoker) headers() [][]string {
	out := make([][]string, len(f.mds))
	for i, md := range f.mds {
		out[i] = md.Get(rpc.AttemptHeader)
	}
	return out
}

func (f *fakeInvoker) invoke(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
	md, _ := metadata.FromOutgoingContext(ctx)
	f.mds = append(f.mds, md)
	i := len(f.mds) - 1
	if f.onCall != nil {
		f.onCall(i + 1)
	}
	if i >= len(f.outcomes) {
		return nil
	}
	o := f.outcomes[i]
	if o.pushback != nil {
		for _, opt := range opts {
			if tr, ok := opt.(grpc.TrailerCallOption); ok {
				*tr.TrailerAddr = metadata.MD{"grpc-retry-pushback-ms": o.pushback}
			}
		}
	}
	return o.err
}

// harness is one interceptor with a fake clock and a fixed jitter sample.
type harness struct {
	clock  *fakeClock
	budget *retry.Budget
	ic     grpc.UnaryClientInterceptor
}

// filled is c with every zero field taken from DefaultConfig, so a test
// states only what it is about.
func filled(c retry.Config) retry.Config {
	def := retry.DefaultConfig()
	if c.MaxAttempts == 0 {
		c.MaxAttempts = def.MaxAttempts
	}
	if c.InitialBackoff == 0 {
		c.InitialBackoff = def.InitialBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = def.MaxBackoff
	}
	if c.Multiplier == 0 {
		c.Multiplier = def.Multiplier
	}
	return c
}

func newHarness(p retry.Config, jitter float64, opts ...retry.Option) *harness {
	h := &harness{clock: newFakeClock()}
	h.budget = retry.NewBudget(retry.BudgetConfig{Ratio: 0.2, MinPerSecond: 10}, retry.WithBudgetClock(h.clock.Now))
	opts = append([]retry.Option{
		retry.WithClock(h.clock),
		retry.WithRand(func() float64 { return jitter }),
	}, opts...)
	h.ic = retry.Client("user", func(string) retry.Config { return p }, h.budget, opts...)
	return h
}

func (h *harness) call(ctx context.Context, method string, inv *fakeInvoker) error {
	return h.ic(ctx, method, nil, nil, nil, inv.invoke)
}

// succeed is an invoker whose every attempt succeeds.
func succeed(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return nil
}
