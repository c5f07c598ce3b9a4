package rpc

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx is done, in which case it returns ctx.Err().
// A d of zero or less returns at once with ctx.Err(), nil while ctx is
// live. It starts no goroutine, and stops its timer on the way out, so an
// interrupted wait leaves nothing behind.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
