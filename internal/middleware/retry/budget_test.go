package retry_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/middleware/retry"
)

// manualTime is a budget clock moved by hand.
type manualTime struct{ t time.Time }

func (m *manualTime) now() time.Time { return m.t }

// drain withdraws retries until the budget refuses and returns how many it
// allowed.
func drain(b *retry.Budget) int {
	n := 0
	for b.TryRetry() {
		n++
	}
	return n
}

// With the defaults (0.2 per request, 10/s over a 10 s window, so a floor of
// 100) a burst of requests buys 20% more retries, and the window forgets
// both requests and retries as it slides.
func TestBudgetUnderABurst(t *testing.T) {
	clock := &manualTime{t: time.Unix(1_700_000_000, 0)}
	start := clock.t
	b := retry.NewBudget(retry.BudgetConfig{Ratio: 0.2, MinPerSecond: 10}, retry.WithBudgetClock(clock.now))
	steps := []struct {
		name     string
		at       time.Duration
		requests int
		allowed  int
	}{
		{"100 requests: 0.2*100 + floor 100", 0, 100, 120},
		{"refused until more requests arrive", 0, 0, 0},
		{"100 more 5s later: 0.2*200 + 100 - 120 used", 5 * time.Second, 100, 20},
		{"one more request: 140 < 0.2*201 + 100 allows one", 5 * time.Second, 1, 1},
		{"4 more reach 0.2*205 + 100 = 141, all used", 5 * time.Second, 4, 0},
		{"10s on, the first second slid out: 0.2*105 + 100 - 21", 10 * time.Second, 0, 100},
		{"20s on, the window is empty: the floor alone", 20 * time.Second, 0, 100},
	}
	for _, s := range steps {
		clock.t = start.Add(s.at)
		for range s.requests {
			b.Request()
		}
		if got := drain(b); got != s.allowed {
			t.Fatalf("%s: %d retries allowed, want %d", s.name, got, s.allowed)
		}
	}
}

func TestBudgetArithmetic(t *testing.T) {
	tests := []struct {
		name         string
		ratio        float64
		minPerSecond int
		window       time.Duration
		requests     int
		allowed      int
	}{
		{"defaults", 0.2, 10, 0, 0, 100},
		{"ratio 0 leaves only the floor", 0, 1, time.Second, 100, 1},
		{"ratio 0 and no floor allow nothing", 0, 0, 0, 100, 0},
		{"floor scales with the window", 0.2, 5, 2 * time.Second, 0, 10},
		{"ratio 0.5", 0.5, 1, time.Second, 10, 6},
		{"float rounding grants no extra retry", 0.1, 1, time.Second, 30, 4},
		{"window too small is ignored", 0.2, 1, time.Nanosecond, 0, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &manualTime{t: time.Unix(1_700_000_000, 0)}
			opts := []retry.BudgetOption{retry.WithBudgetClock(clock.now)}
			if tt.window != 0 {
				opts = append(opts, retry.WithBudgetWindow(tt.window))
			}
			b := retry.NewBudget(retry.BudgetConfig{Ratio: tt.ratio, MinPerSecond: tt.minPerSecond}, opts...)
			for range tt.requests {
				b.Request()
			}
			if got := drain(b); got != tt.allowed {
				t.Fatalf("%d retries allowed, want %d", got, tt.allowed)
			}
		})
	}
}

// A window of 1 s slides in 100 ms buckets: retries taken 950 ms ago still
// count, retries taken 1 s ago do not.
func TestBudgetWindowSlidesInBuckets(t *testing.T) {
	clock := &manualTime{t: time.Unix(1_700_000_000, 0)}
	b := retry.NewBudget(retry.BudgetConfig{Ratio: 0.2, MinPerSecond: 10}, retry.WithBudgetWindow(time.Second), retry.WithBudgetClock(clock.now))
	if got := drain(b); got != 10 {
		t.Fatalf("%d retries allowed, want the floor of 10", got)
	}
	clock.t = clock.t.Add(950 * time.Millisecond)
	if got := drain(b); got != 0 {
		t.Fatalf("%d retries allowed 950ms later, want 0", got)
	}
	clock.t = clock.t.Add(50 * time.Millisecond)
	if got := drain(b); got != 10 {
		t.Fatalf("%d retries allowed 1s later, want 10", got)
	}
}

// Concurrent use never grants more retries than the arithmetic allows.
func TestBudgetConcurrent(t *testing.T) {
	clock := time.Unix(1_700_000_000, 0)
	b := retry.NewBudget(retry.BudgetConfig{Ratio: 0.2, MinPerSecond: 10}, retry.WithBudgetClock(func() time.Time { return clock }))
	var granted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				b.Request()
				if b.TryRetry() {
					granted.Add(1)
				}
				if b.TryRetry() {
					granted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	// 4000 requests: 0.2*4000 + 100 = 900, whatever the interleaving.
	if got := granted.Load() + int64(drain(b)); got != 900 {
		t.Fatalf("%d retries granted in all, want 900", got)
	}
}
