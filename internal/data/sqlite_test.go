package data

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWriteGateLetsOneWriterInAndHonoursTheContext(t *testing.T) {
	g := newWriteGate()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	waiting, stop := context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() { got <- g.acquire(waiting) }()
	select {
	case err := <-got:
		t.Fatalf("second writer got in while the first held the gate (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	stop()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter = %v, want context.Canceled", err)
	}
	g.release()
	if err := g.acquire(ctx); err != nil {
		t.Fatalf("gate not free after release: %v", err)
	}
	g.release()
}
