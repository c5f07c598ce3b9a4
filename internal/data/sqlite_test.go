package data_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/data"
)

func TestWriteGateLetsOneWriterInAndHonoursTheContext(t *testing.T) {
	g := data.NewWriteGate()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	waiting, stop := context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() { got <- g.Acquire(waiting) }()
	select {
	case err := <-got:
		t.Fatalf("second writer got in while the first held the gate (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	stop()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter = %v, want context.Canceled", err)
	}
	g.Release()
	if err := g.Acquire(ctx); err != nil {
		t.Fatalf("gate not free after release: %v", err)
	}
	g.Release()
}
