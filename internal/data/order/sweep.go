package order

import (
	"context"
	"sync"
	"time"
)

// Expiry of the SQL stores' idempotency keys. A key past its TTL is
// ignored by CreateOnce at once (and replaced when its key comes again),
// so the sweep only reclaims space: it runs every sweepInterval off the
// request path, deleting sweepBatch expired keys per statement until a
// statement finds fewer, so one sweep never holds a lock over more than a
// batch.
const (
	defaultSweepInterval = time.Minute
	sweepBatch           = 1000
)

// sweeper runs a store's sweep every interval until closed.
type sweeper struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func startSweeper(interval time.Duration, sweep func(context.Context) (int, error)) *sweeper {
	w := &sweeper{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), interval)
				_, _ = sweep(ctx) // a failed sweep is retried at the next tick
				cancel()
			}
		}
	}()
	return w
}

// stopped reports whether close was called: a sweep in progress stops
// between batches.
func (w *sweeper) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// close stops the sweeper and waits for it. Safe to call more than once.
func (w *sweeper) close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}
