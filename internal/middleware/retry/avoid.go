package retry

import (
	"context"
	"slices"
	"sync"

	"github.com/go-kratos/kratos/v2/selector"
)

// tried holds the addresses of the instances whose attempts failed, for the
// attempts of one call. A hedged call (hedging true) records an instance
// when the balancer picks it rather than when its attempt fails, since its
// attempts run at once, and remembers the candidates of its latest pick so
// the next hedge is sent only when one of them is still untried.
type tried struct {
	mu      sync.Mutex
	addrs   []string
	hedging bool
	seen    []string
}

type triedKey struct{}

func (t *tried) add(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !slices.Contains(t.addrs, addr) {
		t.addrs = append(t.addrs, addr)
	}
}

func (t *tried) has(addr string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Contains(t.addrs, addr)
}

// untried reports whether the latest pick of a hedged call had a candidate
// no attempt of the call has been sent to; known is false while no pick
// has been made yet.
func (t *tried) untried() (untried, known bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, a := range t.seen {
		if !slices.Contains(t.addrs, a) {
			return true, true
		}
	}
	return false, len(t.addrs) > 0
}

// hedgeFilter keeps a hedged call's attempt off every instance the call has
// sent an attempt to, and wraps the candidates so the balancer's pick is
// recorded the moment it is made. With no untried instance it leaves none:
// the attempt fails rather than doubling up on an instance.
func (t *tried) hedgeFilter(nodes []selector.Node) []selector.Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen = t.seen[:0]
	kept := make([]selector.Node, 0, len(nodes))
	for _, n := range nodes {
		t.seen = append(t.seen, n.Address())
		wn, ok := n.(selector.WeightedNode)
		if !ok || slices.Contains(t.addrs, n.Address()) {
			continue
		}
		kept = append(kept, pickRecorder{WeightedNode: wn, t: t})
	}
	return kept
}

// pickRecorder is a candidate of a hedged call's pick: the balancer calls
// Pick on the one it chooses, which records its address for the call.
type pickRecorder struct {
	selector.WeightedNode
	t *tried
}

// Pick records the node as tried, then picks it.
func (p pickRecorder) Pick() selector.DoneFunc {
	p.t.add(p.Address())
	return p.WeightedNode.Pick()
}

// AvoidTried is a Kratos node filter (kgrpc.WithNodeFilter) that keeps a
// retry off the instances this call has already failed on, so a retry of
// an Unavailable or timed-out attempt goes to another instance rather than
// wherever the balancer happens to point. When every instance has failed,
// all are candidates again: a bad instance is better than none. The
// attempts of a hedged call never share an instance: each goes to one no
// other attempt of the call was sent to, or fails without a pick. It must
// be the last filter, so the pick it records is among what the others kept.
func AvoidTried() selector.NodeFilter {
	return func(ctx context.Context, nodes []selector.Node) []selector.Node {
		t, ok := ctx.Value(triedKey{}).(*tried)
		if !ok {
			return nodes
		}
		if t.hedging {
			return t.hedgeFilter(nodes)
		}
		kept := make([]selector.Node, 0, len(nodes))
		for _, n := range nodes {
			if !t.has(n.Address()) {
				kept = append(kept, n)
			}
		}
		if len(kept) == 0 {
			return nodes
		}
		return kept
	}
}
