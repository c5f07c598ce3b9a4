// Package chaos is Rampart's chaos suite: a load driver that sends a steady,
// bounded rate of calls over loopback and records every outcome, the two
// baseline clients the template is compared with (the seed's and Kratos'
// stock one), and, in its tests, the scenarios that break real processes
// and a real Consul under that load. `go test ./test/chaos` runs each
// scenario for a few seconds; `make chaos` runs them at full length and
// writes its section of docs/reliability.md (WriteSection: other suites
// write theirs into the same file) with a picture of each run (PlotRun)
// in docs/reliability/.
package chaos

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Call is one recorded call.
type Call struct {
	Start   time.Time
	Latency time.Duration
	Code    codes.Code
}

// Calls is the record of a load run, in start order.
type Calls []Call

// Load is a steady open-loop load: Rate calls a second, each in its own
// goroutine so that a slow call does not hold back the schedule, for at
// most Duration, each call bounded by Timeout.
type Load struct {
	Rate     int
	Duration time.Duration
	Timeout  time.Duration
	Call     func(ctx context.Context) error
}

// tickEvery is the driver's schedule granularity: calls due in one tick are
// sent together, so high rates do not depend on a fine-grained timer.
const tickEvery = 10 * time.Millisecond

// Running is a load in progress.
type Running struct {
	mu    sync.Mutex
	calls Calls
	wg    sync.WaitGroup
	done  chan struct{}
	stop  context.CancelFunc
}

// Start starts l; it ends by itself after l.Duration, when ctx ends, or on
// Stop. At most Rate × Duration calls are sent.
func Start(ctx context.Context, l Load) *Running {
	ctx, stop := context.WithTimeout(ctx, l.Duration)
	r := &Running{done: make(chan struct{}), stop: stop}
	total := int(float64(l.Rate) * l.Duration.Seconds())
	go func() {
		defer close(r.done)
		begin := time.Now()
		tick := time.NewTicker(tickEvery)
		defer tick.Stop()
		sent := 0
		for sent < total {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			due := min(total, int(time.Since(begin).Seconds()*float64(l.Rate)))
			for ; sent < due; sent++ {
				r.wg.Add(1)
				go r.one(context.WithoutCancel(ctx), l)
			}
		}
	}()
	return r
}

func (r *Running) one(ctx context.Context, l Load) {
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	start := time.Now()
	err := l.Call(ctx)
	c := Call{Start: start, Latency: time.Since(start), Code: status.Code(err)}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
}

// Stop ends the schedule early; calls in flight still finish.
func (r *Running) Stop() { r.stop() }

// Wait waits for the schedule to end and every call in flight to finish,
// and returns the record in start order.
func (r *Running) Wait() Calls {
	<-r.done
	r.wg.Wait()
	r.stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.calls)
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Between returns the calls that started in [from, to).
func (cs Calls) Between(from, to time.Time) Calls {
	var out Calls
	for _, c := range cs {
		if !c.Start.Before(from) && c.Start.Before(to) {
			out = append(out, c)
		}
	}
	return out
}

// Failed returns the calls that did not end with OK.
func (cs Calls) Failed() Calls {
	return cs.Where(func(c Call) bool { return c.Code != codes.OK })
}

// Where returns the calls for which keep is true.
func (cs Calls) Where(keep func(Call) bool) Calls {
	var out Calls
	for _, c := range cs {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// ByCode counts the calls per status code, e.g. "Unavailable=12 OK=3000".
func (cs Calls) ByCode() string {
	m := map[codes.Code]int{}
	for _, c := range cs {
		m[c.Code]++
	}
	parts := make([]string, 0, len(m))
	for code, n := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", code, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// Quantile returns the latency below which the fraction q of the calls
// fall (nearest rank), 0 for no calls.
func (cs Calls) Quantile(q float64) time.Duration {
	if len(cs) == 0 {
		return 0
	}
	lat := make([]time.Duration, len(cs))
	for i, c := range cs {
		lat[i] = c.Latency
	}
	slices.Sort(lat)
	i := int(q*float64(len(lat))+0.5) - 1
	return lat[min(max(i, 0), len(lat)-1)]
}

// Max is the slowest call's latency.
func (cs Calls) Max() time.Duration { return cs.Quantile(1) }

// LastWhere returns the start of the last call for which bad is true, and
// false if there is none.
func (cs Calls) LastWhere(bad func(Call) bool) (time.Time, bool) {
	for i := len(cs) - 1; i >= 0; i-- {
		if bad(cs[i]) {
			return cs[i].Start, true
		}
	}
	return time.Time{}, false
}

// StreakFrom returns the start of the first call at or after from that
// begins a run of successes lasting at least span (by start time), and
// false if the calls after from never get there.
func (cs Calls) StreakFrom(from time.Time, span time.Duration) (time.Time, bool) {
	var begin time.Time
	for _, c := range cs {
		if c.Start.Before(from) {
			continue
		}
		if c.Code != codes.OK {
			begin = time.Time{}
			continue
		}
		if begin.IsZero() {
			begin = c.Start
		}
		if c.Start.Sub(begin) >= span {
			return begin, true
		}
	}
	return time.Time{}, false
}
