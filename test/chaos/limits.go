package chaos

import (
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
)

// Limit is the most a latency measured under a fault may be: fixed, what
// the behaviour costs by design (a timeout, a backoff; 0 for a local
// answer), plus an allowance for the calls' own work, quiet, a figure for a
// machine left to the suite. A short run on two shared CPUs, whose timings
// swing ±40% from run to run, passes slack > 0: the allowance then grows to
// slack × the p99 of healthy (HealthyAround) when that is more. why tells
// how the limit was reached, for a failure message.
func Limit(fixed, quiet time.Duration, slack float64, healthy Calls) (limit time.Duration, why string) {
	allow, why := quiet, Dur(quiet)
	if slack > 0 {
		p99 := healthy.Quantile(0.99)
		if scaled := time.Duration(slack * float64(p99)); scaled > quiet {
			allow, why = scaled, fmt.Sprintf("%g x healthy p99 %s", slack, Dur(p99))
		}
	}
	if fixed > 0 {
		why = Dur(fixed) + " + " + why
	}
	return fixed + allow, why
}

// HealthyAround returns the calls that show what a healthy call costs in
// a run, the baseline of Limit: those that succeeded and ended before
// faultAt, and, unless recoveredAt is zero, those that succeeded from the
// client's recovery on, so that load arriving on the machine mid-run shows
// in the baseline as it does under the fault.
func HealthyAround(cs Calls, faultAt, recoveredAt time.Time) Calls {
	return cs.Where(func(c Call) bool {
		before := c.Start.Add(c.Latency).Before(faultAt)
		after := !recoveredAt.IsZero() && !c.Start.Before(recoveredAt)
		return c.Code == codes.OK && (before || after)
	})
}
