package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/middleware/faults"
)

// TestOneBadInstanceDoesNotFailTheMethod: of two user instances, the one
// order's balancer favours goes bad, answering fast with a failure or hanging.
// Outlier ejection takes it out of order's pick after a few failures, so
// almost every CreateOrder succeeds on the healthy one, and the bad one sees
// few attempts. The fault goes on the busy instance: on the idle one it
// would prove nothing.
func TestOneBadInstanceDoesNotFailTheMethod(t *testing.T) {
	const (
		warmup, calls = 50, 100
		maxFailed     = 5 // clients.user.outlier.consecutive_failures: the price before ejection
		maxBadShare   = 0.10
	)
	cases := []struct {
		name  string
		fault faults.Fault
	}{
		{"INTERNAL", faults.Fault{Abort: &faults.Abort{Percent: 100, Code: "INTERNAL"}}},
		{"RESOURCE_EXHAUSTED", faults.Fault{Abort: &faults.Abort{Percent: 100, Code: "RESOURCE_EXHAUSTED"}}},
		{"UNAVAILABLE", faults.Fault{Abort: &faults.Abort{Percent: 100, Code: "UNAVAILABLE"}}},
		{"UNKNOWN", faults.Fault{Abort: &faults.Abort{Percent: 100, Code: "UNKNOWN"}}},
		{"delay 2s", faults.Fault{Delay: &faults.Delay{Percent: 100, Duration: 2 * time.Second}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := devstacktest.Context(t, 2*time.Minute)
			s := startStack(t, ctx, 2, 1)
			buyer := newBuyer(t, ctx, s)
			users := s.Instances("user")
			client := orderAt(t, s, s.Instances("order")[0])
			place := placeOrder(client, buyer, 5*time.Second)
			for range warmup {
				if err := place(ctx); err != nil {
					t.Fatal(err)
				}
			}
			seen := func() [2]int64 {
				var out [2]int64
				for i, p := range users {
					st, err := devstacktest.Faults(ctx, p)
					if err != nil {
						t.Fatal(err)
					}
					out[i] = st.Seen[getUser]
				}
				return out
			}
			before := seen()
			busy := 0
			if before[1] > before[0] {
				busy = 1
			}
			setFaults(t, ctx, users[busy:busy+1], map[string]faults.Fault{getUser: tc.fault})

			res := runCalls(ctx, calls, 1, func(ctx context.Context, _ int) error { return place(ctx) })
			after := seen()
			bad, good := after[busy]-before[busy], after[1-busy]-before[1-busy]
			t.Logf("warm-up split %v; fault on the busy instance: %d of %d CreateOrder failed (%v); attempts: %d on the bad instance, %d on the good one",
				before, len(res.failed()), calls, res.failed().byCode(), bad, good)
			if n := len(res.failed()); n > maxFailed {
				t.Errorf("%d of %d CreateOrder failed, want at most %d", n, calls, maxFailed)
			}
			if share := float64(bad) / float64(max(1, bad+good)); share > maxBadShare {
				t.Errorf("the bad instance got %d of %d attempts (%.0f%%), want at most %.0f%%", bad, bad+good, 100*share, 100*maxBadShare)
			}
			// Kratos' P2C already steers away from Unavailable and slow
			// answers after one or two; the fault must have hit at least once.
			if st, err := devstacktest.Faults(ctx, users[busy]); err != nil || st.Injected[getUser].Abort+st.Injected[getUser].Delay == 0 {
				t.Errorf("the fault never fired on the bad instance (%v): the test proved nothing", err)
			}
		})
	}
}
