package consul

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/registry"
	"github.com/hashicorp/consul/api"

	"github.com/rampart-go/rampart/internal/rpc"
)

var _ registry.Watcher = (*watcher)(nil)

// GetService returns the instances of name whose checks all pass, sorted by
// ID; none is an empty list, not an error. Reads go to the leader (no stale
// reads); a registration reaches them once the agent has synced it to the
// catalog, normally within milliseconds. Without a deadline in ctx the
// request timeout applies.
func (r *Registry) GetService(ctx context.Context, name string) ([]*registry.ServiceInstance, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = r.withRequestTimeout(ctx)
		defer cancel()
	}
	entries, _, err := r.client.Health().Service(name, "", true, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul: get service %s: %w", name, err)
	}
	return instances(entries), nil
}

// Watch returns a watcher of the passing instances of name. It never fails
// because Consul is down: the watcher retries in the background. Its first
// Next returns the set an earlier watcher of name on this Registry last
// delivered, at once, if there was one (a gRPC channel that went idle
// stopped that watcher, and its next call must not wait for Consul), and
// otherwise the first set Consul reports. The watcher lives until Stop,
// Close, or the end of ctx (so pass a long-lived context, as Kratos'
// resolver does).
func (r *Registry) Watch(ctx context.Context, name string) (registry.Watcher, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &watcher{
		name:   name,
		health: r.client.Health(),
		opts:   &r.opts,
		log:    r.log,
		ctx:    wctx,
		cancel: cancel,
		done:   make(chan struct{}),
		notify: make(chan struct{}, 1),
	}
	w.forget = func() {
		r.mu.Lock()
		delete(r.watchers, w)
		r.mu.Unlock()
	}
	w.seed = r.known[name]
	w.remember = func(set []*registry.ServiceInstance) {
		r.mu.Lock()
		r.known[name] = set
		r.mu.Unlock()
	}
	r.watchers[w] = struct{}{}
	go w.run()
	return w, nil
}

// watcher follows one service with blocking queries in a goroutine and hands
// the latest changed set to Next. Sets that change faster than Next is called
// are coalesced: Next always returns the newest.
type watcher struct {
	name   string
	health *api.Health
	opts   *options
	log    *log.Helper
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	forget func()        // drops w from its Registry
	stop   sync.Once

	seed     []*registry.ServiceInstance       // the Registry's last known set of name, read-only
	remember func([]*registry.ServiceInstance) // records a delivered set in the Registry

	mu         sync.Mutex
	pending    []*registry.ServiceInstance
	hasPending bool
	notify     chan struct{} // capacity 1: "pending is set"
}

// Next returns the first set Consul reports (even if empty), then blocks
// until the set changes (the empty set included, when the last instance
// leaves). It returns context.Canceled after Stop, or the watch context's
// error when that ends.
func (w *watcher) Next() ([]*registry.ServiceInstance, error) {
	for {
		if err := w.ctx.Err(); err != nil {
			return nil, err
		}
		select {
		case <-w.ctx.Done():
			return nil, w.ctx.Err()
		case <-w.notify:
			w.mu.Lock()
			set, ok := w.pending, w.hasPending
			w.pending, w.hasPending = nil, false
			w.mu.Unlock()
			if ok {
				return set, nil
			}
		}
	}
}

// Stop ends the watch and makes a blocked Next return context.Canceled. It
// waits for the watcher's goroutine, so nothing runs after it. Idempotent.
func (w *watcher) Stop() error {
	w.stop.Do(func() {
		w.cancel()
		<-w.done
	})
	return nil
}

func (w *watcher) publish(set []*registry.ServiceInstance) {
	w.remember(cloneInstances(set))
	w.mu.Lock()
	w.pending, w.hasPending = cloneInstances(set), true
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default: // Next has not taken the previous signal yet; it will see this set
	}
}

// run is the watch loop. Its rules:
//   - It starts from the Registry's last known set of the service, if any:
//     Consul's first answer replaces it only if it differs.
//   - Blocking queries wait up to WaitTime for the index to pass the last one.
//   - A Consul error never empties the set: clients keep the last known
//     instances, and failures are logged as outage decides, not per
//     retry.
//   - After an error, or when the index goes backwards (a new agent), the
//     index starts again from 0, since a new agent's indexes are lower and a
//     blocking query on the old index would stall until they catch up.
//   - Right after such a recovery an empty answer is held back for the
//     recovery grace: the agent has lost its registrations and the
//     registrars are putting them back.
//   - A token that may not read the service or its nodes gets no error
//     but an empty answer marked as filtered by ACLs (an unknown token
//     gets a 403). Either is logged as an error naming the permissions
//     (so is a TLS handshake with the agent failing on a certificate;
//     a filtered answer once until it ends), and while the answer is filtered the queries
//     block no longer than the retry backoff's maximum: fixing the policy
//     changes no index, so a blocking query would not notice it.
func (w *watcher) run() {
	defer close(w.done)
	defer w.forget() // also when the watch context ends without Stop
	var (
		index        uint64
		last         []*registry.ServiceInstance
		published    bool
		bo           = newBackoff(w.opts.backoffInitial, w.opts.backoffMax)
		failures     = outage{hint: needRead(w.name)}
		recoverUntil time.Time // hold back an empty set until then
		holding      bool      // an empty set is being held back (logged once)
		filtered     bool      // the last answer was empty, filtered by ACLs (logged once)
	)
	recovering := func() {
		if published && len(last) > 0 {
			recoverUntil = time.Now().Add(w.opts.recoveryGrace)
		}
	}
	if len(w.seed) > 0 {
		last, published = w.seed, true
		w.publish(w.seed)
		w.log.Debugf("consul: watch %s: starting from the %d instance(s) last known", w.name, len(last))
	}
	for {
		q := &api.QueryOptions{WaitIndex: index, WaitTime: w.opts.waitTime}
		if rem := time.Until(recoverUntil); rem > 0 && rem < q.WaitTime {
			q.WaitTime = rem.Round(time.Millisecond) + time.Millisecond
		}
		if filtered {
			q.WaitTime = min(q.WaitTime, w.opts.backoffMax)
		}
		entries, meta, err := w.health.Service(w.name, "", true, q.WithContext(w.ctx))
		if w.ctx.Err() != nil {
			return
		}
		if err != nil {
			if refused, log, ferr := failures.fail(err); log {
				logf := w.log.Warnf
				if refused {
					logf = w.log.Errorf
				}
				logf("consul: watch %s: %v; keeping %d last known instance(s), retrying", w.name, ferr, len(last))
			}
			index = 0
			if rpc.Sleep(w.ctx, bo.next()) != nil {
				return
			}
			continue
		}
		bo.reset()
		if d := failures.end(); d > 0 {
			w.log.Infof("consul: watch %s: Consul answers again after %s", w.name, d.Round(time.Millisecond))
			recovering()
		}
		if meta.LastIndex < index {
			index = 0
			recovering()
			continue
		}
		// Index 0 would make the next query return at once, in a loop.
		index = max(meta.LastIndex, 1)

		set := instances(entries)
		hidden := len(set) == 0 && meta.ResultsFilteredByACLs
		switch {
		case hidden && !filtered:
			w.log.Errorf("consul: watch %s: Consul filtered every instance out of its answer: %s; finding none until it does",
				w.name, needRead(w.name))
		case !hidden && filtered:
			w.log.Infof("consul: watch %s: the answer is no longer filtered by ACLs (%d instance(s))", w.name, len(set))
		}
		filtered = hidden
		if len(set) == 0 && time.Now().Before(recoverUntil) {
			if !holding {
				holding = true
				w.log.Infof("consul: watch %s: no instances right after Consul came back; keeping %d last known for up to %s while they re-register",
					w.name, len(last), time.Until(recoverUntil).Round(time.Millisecond))
			}
			continue
		}
		holding = false
		recoverUntil = time.Time{}
		if published && sameInstances(last, set) {
			continue
		}
		last, published = set, true
		w.publish(set)
	}
}
