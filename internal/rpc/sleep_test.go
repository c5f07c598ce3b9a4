package rpc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/rpc"
)

func TestSleep(t *testing.T) {
	// long is a wait no test may sit out: a Sleep that returns early
	// returned because its context ended.
	const long = time.Minute
	tests := []struct {
		name    string
		ctx     func(*testing.T) context.Context
		d       time.Duration
		want    error
		atLeast time.Duration
	}{
		{"waits d", testCtx, 20 * time.Millisecond, nil, 20 * time.Millisecond},
		{"zero with a live context", testCtx, 0, nil, 0},
		{"negative with a live context", testCtx, -time.Second, nil, 0},
		{"context already cancelled", cancelledCtx, long, context.Canceled, 0},
		{"zero with a cancelled context", cancelledCtx, 0, context.Canceled, 0},
		{"cancelled while waiting", func(t *testing.T) context.Context {
			t.Helper()
			ctx, cancel := context.WithCancel(testCtx(t))
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx
		}, long, context.Canceled, 20 * time.Millisecond},
		{"deadline while waiting", func(t *testing.T) context.Context {
			t.Helper()
			ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Millisecond)
			t.Cleanup(cancel)
			return ctx
		}, long, context.DeadlineExceeded, 20 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The clock starts before the context, whose own timer may
			// already be running: the lower bound then always holds.
			start := time.Now()
			ctx := tt.ctx(t)
			err := rpc.Sleep(ctx, tt.d)
			took := time.Since(start)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Sleep = %v, want %v", err, tt.want)
			}
			if took < tt.atLeast || took >= long/2 {
				t.Fatalf("Sleep took %v, want at least %v and well under %v", took, tt.atLeast, long)
			}
		})
	}
}

func cancelledCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	return ctx
}
