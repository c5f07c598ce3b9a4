package consul

import "time"

// refusalLogEvery is how often a refusal that lasts is logged again:
// an error logged once at start scrolls away, and the instance stays
// undiscoverable (or without a certificate) until someone reads it.
const refusalLogEvery = time.Minute

// outage follows the failures of one retry loop against the agent and
// decides which of them to log, the same way in every loop (registration,
// its keep-alive, a watch, a certificate follower): the first; each change
// between an outage (the agent down or slow, which passes by itself, a
// warning) and a refusal (operatorError: an error an operator must fix);
// and a refusal that lasts, every refusalLogEvery. Logging only the first
// failure is not enough: a loop whose first attempt met a reset and whose
// next ones meet the agent's refusal would never say what to fix.
type outage struct {
	hint     string // the ACL rule this loop needs, for operatorError
	since    time.Time
	refused  bool
	loggedAt time.Time
}

// fail records err. It returns whether it is a refusal, whether to log it
// now, and err, explained when it is a refusal.
func (o *outage) fail(err error) (refused, log bool, explained error) {
	now := time.Now()
	if oe := operatorError(err, o.hint); oe != nil {
		err, refused = oe, true
	}
	first := o.since.IsZero()
	if first {
		o.since = now
	}
	if !first && refused == o.refused && (!refused || now.Sub(o.loggedAt) < refusalLogEvery) {
		return refused, false, err
	}
	o.refused, o.loggedAt = refused, now
	return refused, true, err
}

// down reports whether a failure was recorded since the last end.
func (o *outage) down() bool { return !o.since.IsZero() }

// lasted is how long the current outage has lasted (0 if none).
func (o *outage) lasted() time.Duration {
	if o.since.IsZero() {
		return 0
	}
	return time.Since(o.since)
}

// end closes the outage and returns how long it lasted (0 if none).
func (o *outage) end() time.Duration {
	d := o.lasted()
	o.since, o.refused, o.loggedAt = time.Time{}, false, time.Time{}
	return d
}
