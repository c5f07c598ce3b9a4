package bench_test

import (
	"runtime"
	"sync"
	"testing"

	"github.com/rampart-go/rampart/test/bench"
)

// BenchmarkThroughput runs cases (a), (b) and (c) at saturation: bench.InFlight
// callers share the case's one connection, each sending its next call when
// its last one returned, for as long as the benchmark runs. ns/op is then
// wall time divided by calls, so calls/s (reported) is its inverse; on two
// CPUs it measures how much CPU a call costs both ends together, where
// BenchmarkUnary's one call in flight also measures the latency of each
// layer's wake-ups and hand-offs. allocs/op and goroutines/op count as there.
//
// Any failed call fails the benchmark: a chain that sheds or rejects calls
// under this load would look faster than one that serves them all.
func BenchmarkThroughput(b *testing.B) {
	for _, c := range cases() {
		if c.name != bench.CaseGRPC && c.name != bench.CaseKratos && c.name != bench.CaseRampart {
			continue
		}
		b.Run(c.name, func(b *testing.B) {
			f, ctx, req := warmUp(b, c)
			b.SetParallelism(max(1, bench.InFlight/runtime.GOMAXPROCS(0)))
			var (
				mu       sync.Mutex
				failures int
				first    error
			)
			b.ReportAllocs()
			started := goroutinesCreated()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := f.client.GetUser(ctx, req); err != nil {
						mu.Lock()
						failures++
						if first == nil {
							first = err
						}
						mu.Unlock()
					}
				}
			})
			b.ReportMetric(float64(goroutinesCreated()-started)/float64(b.N), "goroutines/op")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
			if failures > 0 {
				b.Fatalf("%d of %d calls failed, the first with: %v", failures, b.N, first)
			}
		})
	}
}
