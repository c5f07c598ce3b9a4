package e2e

import (
	"context"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// call is one recorded call of a load run.
type call struct {
	start   time.Time
	latency time.Duration
	err     error
}

// calls is the record of a load run, in start order.
type calls []call

// runCalls makes n calls with at most workers in flight and returns them.
// fn gets the call's index, so each call can use its own idempotency key.
func runCalls(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) calls {
	out := make(calls, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				start := time.Now()
				err := fn(ctx, i)
				out[i] = call{start: start, latency: time.Since(start), err: err}
			}
		}()
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// steadyLoad calls fn rate times a second, each call in its own goroutine
// so a slow call does not hold back the schedule, until ctx ends; wait
// returns the record once every call in flight has finished.
type steadyLoad struct {
	mu    sync.Mutex
	calls calls
	wg    sync.WaitGroup
	done  chan struct{}
}

func startSteadyLoad(ctx context.Context, rate int, fn func(ctx context.Context) error) *steadyLoad {
	l := &steadyLoad{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				start := time.Now()
				err := fn(context.WithoutCancel(ctx))
				l.mu.Lock()
				l.calls = append(l.calls, call{start: start, latency: time.Since(start), err: err})
				l.mu.Unlock()
			}()
		}
	}()
	return l
}

func (l *steadyLoad) wait() calls {
	<-l.done
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.Slice(l.calls, func(i, j int) bool { return l.calls[i].start.Before(l.calls[j].start) })
	return l.calls
}

// between returns the calls that started in [from, to).
func (cs calls) between(from, to time.Time) calls {
	var out calls
	for _, c := range cs {
		if !c.start.Before(from) && c.start.Before(to) {
			out = append(out, c)
		}
	}
	return out
}

// failed returns the calls that ended in an error.
func (cs calls) failed() calls {
	var out calls
	for _, c := range cs {
		if c.err != nil {
			out = append(out, c)
		}
	}
	return out
}

// byCode counts the calls per status code.
func (cs calls) byCode() map[codes.Code]int {
	m := map[codes.Code]int{}
	for _, c := range cs {
		m[status.Code(c.err)]++
	}
	return m
}

// maxLatency is the slowest call.
func (cs calls) maxLatency() time.Duration {
	var m time.Duration
	for _, c := range cs {
		m = max(m, c.latency)
	}
	return m
}
