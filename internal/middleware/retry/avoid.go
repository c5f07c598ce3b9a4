package retry

import (
	"context"
	"slices"
	"sync"

	"github.com/go-kratos/kratos/v2/selector"
)

// tried holds the addresses of the instances whose attempts failed, for the
// attempts of one call.
type tried struct {
	mu    sync.Mutex
	addrs []string
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

// AvoidTried is a Kratos node filter (kgrpc.WithNodeFilter) that keeps a
// retry off the instances this call has already failed on, so a retry of
// an Unavailable or timed-out attempt goes to another instance rather than
// wherever the balancer happens to point. When every instance has failed,
// all are candidates again: a bad instance is better than none.
func AvoidTried() selector.NodeFilter {
	return func(ctx context.Context, nodes []selector.Node) []selector.Node {
		t, ok := ctx.Value(triedKey{}).(*tried)
		if !ok {
			return nodes
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
