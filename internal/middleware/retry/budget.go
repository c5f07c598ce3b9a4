package retry

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

const (
	defaultBudgetWindow = 10 * time.Second
	budgetBuckets       = 10
)

// BudgetConfig is a client target's retry budget, the budget block of a
// client in the config file.
type BudgetConfig struct {
	// Ratio is the retries allowed per request in the window, in [0, 1].
	// 0 is a meaning, not a default: no retries in proportion to traffic,
	// only the MinPerSecond floor.
	Ratio float64 `yaml:"ratio"`
	// MinPerSecond is the floor: retries per second of window allowed
	// whatever the traffic, so a quiet target can still retry its
	// occasional failure. With Ratio 0 as well, nothing is ever retried.
	MinPerSecond int `yaml:"min_per_second"`
}

// DefaultBudgetConfig is Finagle's budget: 20 % of requests plus ten
// retries a second.
func DefaultBudgetConfig() BudgetConfig {
	return BudgetConfig{Ratio: 0.2, MinPerSecond: 10}
}

// Validate reports every invalid field, each as "key: reason".
func (c BudgetConfig) Validate() error {
	var errs []error
	if math.IsNaN(c.Ratio) || math.IsInf(c.Ratio, 0) {
		errs = append(errs, fmt.Errorf("ratio: must be a finite number, got %v", c.Ratio))
	} else if c.Ratio < 0 || c.Ratio > 1 {
		errs = append(errs, fmt.Errorf("ratio: must be between 0 and 1, got %v", c.Ratio))
	}
	if c.MinPerSecond < 0 {
		errs = append(errs, errors.New("min_per_second: must be >= 0"))
	}
	return errors.Join(errs...)
}

// Budget limits the retries of one client target, as Finagle's and Linkerd's
// retry budgets do: over a sliding window, a retry is allowed while
//
//	retries < ratio * requests + minPerSecond * window seconds
//
// so during a full outage the target sees at most (1 + ratio) times its
// normal load plus a small floor, and a target with little traffic can still
// retry its occasional failure. The window slides in ten buckets. A Budget is
// safe for concurrent use and is shared by every method of its target.
type Budget struct {
	ratio  float64
	floor  float64 // minPerSecond * window seconds
	bucket time.Duration
	now    func() time.Time

	mu      sync.Mutex
	buckets [budgetBuckets]budgetBucket
}

type budgetBucket struct {
	epoch    int64 // which bucket-length slice of time the counts belong to
	requests int64
	retries  int64
}

// BudgetOption configures NewBudget.
type BudgetOption func(*Budget)

// WithBudgetWindow sets the sliding window (default 10 s); it slides in ten
// equal buckets. A window under ten nanoseconds is ignored.
func WithBudgetWindow(d time.Duration) BudgetOption {
	return func(b *Budget) {
		if d >= budgetBuckets {
			b.bucket = d / budgetBuckets
		}
	}
}

// WithBudgetClock replaces the wall clock that places requests and retries
// in the window.
func WithBudgetClock(now func() time.Time) BudgetOption {
	return func(b *Budget) { b.now = now }
}

// NewBudget returns a retry budget allowing c.Ratio retries per request plus
// c.MinPerSecond retries per second of window, as given: a zero is a zero
// (see BudgetConfig), and the caller validates c.
func NewBudget(c BudgetConfig, opts ...BudgetOption) *Budget {
	b := &Budget{
		ratio:  c.Ratio,
		bucket: defaultBudgetWindow / budgetBuckets,
		now:    time.Now,
	}
	for _, opt := range opts {
		opt(b)
	}
	window := b.bucket * budgetBuckets
	b.floor = float64(c.MinPerSecond) * window.Seconds()
	return b
}

// Request counts one logical request: the first attempt of a call that may
// be retried.
func (b *Budget) Request() {
	b.mu.Lock()
	b.current().requests++
	b.mu.Unlock()
}

// TryRetry withdraws one retry and reports true if the window allows it; it
// reports false, and counts nothing, if the budget is exhausted.
func (b *Budget) TryRetry() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.current()
	var requests, retries int64
	for i := range b.buckets {
		if bk := &b.buckets[i]; cur.epoch-bk.epoch < budgetBuckets {
			requests += bk.requests
			retries += bk.retries
		}
	}
	// The epsilon keeps float rounding (0.1*30 = 3.0000000000000004) from
	// granting a retry the arithmetic does not.
	if float64(retries) >= b.ratio*float64(requests)+b.floor-1e-9 {
		return false
	}
	cur.retries++
	return true
}

// current returns the bucket of the present moment, emptying it first if it
// last held an older slice of time. The caller holds b.mu.
func (b *Budget) current() *budgetBucket {
	epoch := b.now().UnixNano() / int64(b.bucket)
	slot := epoch % budgetBuckets
	if slot < 0 { // a clock before 1970
		slot += budgetBuckets
	}
	bk := &b.buckets[slot]
	if bk.epoch != epoch {
		*bk = budgetBucket{epoch: epoch}
	}
	return bk
}
