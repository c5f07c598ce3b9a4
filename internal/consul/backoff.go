package consul

import (
	"math/rand/v2"
	"time"
)

// backoff is exponential with equal jitter: each delay is between half and
// all of the current step, so many clients cut off by one Consul outage do
// not come back in lockstep.
type backoff struct {
	initial, max, step time.Duration
}

func newBackoff(initial, maxDelay time.Duration) *backoff {
	return &backoff{initial: initial, max: maxDelay}
}

// next returns the delay before the next retry and doubles the step.
func (b *backoff) next() time.Duration {
	if b.step == 0 {
		b.step = b.initial
	} else {
		b.step = min(b.step*2, b.max)
	}
	half := b.step / 2
	return half + rand.N(b.step-half+1)
}

// reset starts again from the initial delay after a success.
func (b *backoff) reset() { b.step = 0 }
