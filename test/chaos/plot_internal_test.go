package chaos

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

func TestBuckets(t *testing.T) {
	origin := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return origin.Add(time.Duration(ms) * time.Millisecond) }
	var cs Calls
	// Bucket 0: 100 calls, 1..100 ms, the last two failed: the p99 is the
	// 99th latency (nearest rank), 99 ms.
	for i := range 100 {
		code := codes.OK
		if i >= 98 {
			code = codes.Unavailable
		}
		cs = append(cs, Call{Start: at(i), Latency: time.Duration(i+1) * time.Millisecond, Code: code})
	}
	// Bucket 1 is empty. Bucket 2: one call at its first instant; bucket 3:
	// one at its last.
	cs = append(cs,
		Call{Start: at(200), Latency: 7 * time.Millisecond, Code: codes.DeadlineExceeded},
		Call{Start: at(400).Add(-time.Nanosecond), Latency: 3 * time.Millisecond},
		// Outside the four buckets: before the origin, and at the end.
		Call{Start: at(-1), Latency: time.Second},
		Call{Start: at(400), Latency: time.Second},
	)
	got := buckets(cs, origin, 100*time.Millisecond, 4)
	want := []bucket{
		{ok: 98, failed: 2, p99: 99 * time.Millisecond},
		{},
		{failed: 1, p99: 7 * time.Millisecond},
		{ok: 1, p99: 3 * time.Millisecond},
	}
	if len(got) != len(want) {
		t.Fatalf("%d buckets, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("bucket %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestBucketPoints(t *testing.T) {
	bs := []bucket{
		{ok: 3, failed: 1, p99: 2 * time.Millisecond},
		{},
		{ok: 1, p99: 0}, // a p99 under the axis' floor is drawn at it
		{failed: 2, p99: 1500 * time.Millisecond},
	}
	ok, failed, p99 := points(bs)
	for i, x := range []float64{0.05, 0.15, 0.25, 0.35} {
		if ok[i].X != x || failed[i].X != x {
			t.Errorf("point %d at x %g and %g, want %g (the middle of its bucket)", i, ok[i].X, failed[i].X, x)
		}
		if ok[i].Y != float64(bs[i].ok) || failed[i].Y != float64(bs[i].failed) {
			t.Errorf("point %d: ok %g failed %g, want %d and %d", i, ok[i].Y, failed[i].Y, bs[i].ok, bs[i].failed)
		}
	}
	// The empty bucket breaks the p99 line in two.
	if len(p99) != 2 || len(p99[0]) != 1 || len(p99[1]) != 2 {
		t.Fatalf("p99 runs %v, want [[bucket 0] [buckets 2 3]]", p99)
	}
	if p99[0][0].Y != 2 || p99[1][0].Y != minP99 || p99[1][1].Y != 1500 {
		t.Errorf("p99 in ms: %v, want 2, %g, 1500", p99, minP99)
	}
}

func TestPlotLogTicks(t *testing.T) {
	var labels []string
	minor := 0
	for _, tk := range msDecades(0.1, 1000) {
		if tk.IsMinor() {
			minor++
			continue
		}
		labels = append(labels, tk.Label)
	}
	if want := []string{"0.1 ms", "1 ms", "10 ms", "100 ms", "1 s"}; !slices.Equal(labels, want) {
		t.Errorf("labels %q, want %q", labels, want)
	}
	if minor != 4*8 {
		t.Errorf("%d minor ticks, want 8 in each of the 4 decades", minor)
	}
}

func TestPlotLinearTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		want   []string
	}{
		{0, 29.3, []string{"0", "5", "10", "15", "20", "25"}},
		{0, 35.2, []string{"0", "5", "10", "15", "20", "25", "30", "35"}},
		{0, 260, []string{"0", "50", "100", "150", "200", "250"}},
		{0, 1.3, []string{"0.0", "0.2", "0.4", "0.6", "0.8", "1.0", "1.2"}},
		{2, 2, []string{"2"}},
	} {
		var labels []string
		for _, tk := range linearTicks(tc.lo, tc.hi) {
			if !tk.IsMinor() {
				labels = append(labels, tk.Label)
			}
		}
		if !slices.Equal(labels, tc.want) {
			t.Errorf("ticks of [%g, %g]: %q, want %q", tc.lo, tc.hi, labels, tc.want)
		}
	}
}
