package order

import (
	"cmp"
	"container/list"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	orderbiz "github.com/rampart-go/rampart/internal/biz/order"
)

// Store keeps orders in memory together with a bounded index of
// idempotency keys. Keys are forgotten after a TTL or when the index is
// full, oldest first; the orders themselves are kept.
type Store struct {
	keyOpts

	mu     sync.Mutex
	orders map[string]orderbiz.Order
	// byUser holds each user's orders by Seq ascending: Seq comes from
	// lastSeq, which only grows, so appending keeps the order.
	byUser  map[string][]userOrder
	lastSeq int64
	keys    map[string]*list.Element
	// byAge holds *keyEntry oldest first. Every key lives for the same TTL,
	// so the oldest entry is also the first to expire and one list serves
	// both the TTL and the size cap.
	byAge *list.List
}

// userOrder is one entry of a user's list: the Seq a page seeks by and the
// order it names.
type userOrder struct {
	seq int64
	id  string
}

type keyEntry struct {
	key     string
	orderID string
	expires time.Time
}

var _ orderbiz.Repo = (*Store)(nil)

// Option bounds the idempotency index of either order store.
type Option func(*keyOpts)

// keyOpts bounds an idempotency index.
type keyOpts struct {
	ttl           time.Duration
	capacity      int
	now           func() time.Time
	sweepInterval time.Duration
}

func newKeyOpts(opts []Option) keyOpts {
	o := keyOpts{ttl: 24 * time.Hour, capacity: 100000, now: time.Now, sweepInterval: defaultSweepInterval}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithIdempotencyTTL sets how long a key is remembered.
func WithIdempotencyTTL(d time.Duration) Option {
	return func(o *keyOpts) { o.ttl = d }
}

// WithIdempotencyCapacity caps how many keys the memory store remembers
// at once; the SQL stores keep every key for its TTL.
func WithIdempotencyCapacity(n int) Option {
	return func(o *keyOpts) { o.capacity = n }
}

// WithSweepInterval sets how often the SQL stores delete expired keys
// (default 1 minute); the memory store expires them as it goes.
func WithSweepInterval(d time.Duration) Option {
	return func(o *keyOpts) { o.sweepInterval = d }
}

// WithClock replaces time.Now, for tests of expiry.
func WithClock(now func() time.Time) Option {
	return func(o *keyOpts) { o.now = now }
}

// NewStore returns an empty store; by default keys live 24 h and at
// most 100,000 are kept.
func NewStore(opts ...Option) *Store {
	return &Store{
		keyOpts: newKeyOpts(opts),
		orders:  make(map[string]orderbiz.Order),
		byUser:  make(map[string][]userOrder),
		keys:    make(map[string]*list.Element),
		byAge:   list.New(),
	}
}

// CreateOnce stores o under key unless key is already remembered, in which
// case it returns the order first stored under it. Holding one lock across
// the lookup and the insert is what makes two concurrent retries of the same
// request create one order.
func (s *Store) CreateOnce(_ context.Context, key string, o *orderbiz.Order) (*orderbiz.Order, bool, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	if el, ok := s.keys[key]; ok {
		stored := s.orders[el.Value.(*keyEntry).orderID]
		return &stored, false, nil
	}
	stored := *o
	stored.ID = uuid.NewString()
	s.lastSeq++
	stored.Seq = s.lastSeq
	s.orders[stored.ID] = stored
	s.byUser[stored.UserID] = append(s.byUser[stored.UserID], userOrder{seq: stored.Seq, id: stored.ID})
	s.keys[key] = s.byAge.PushBack(&keyEntry{key: key, orderID: stored.ID, expires: now.Add(s.ttl)})
	for s.byAge.Len() > s.capacity {
		s.forget(s.byAge.Front())
	}
	return &stored, true, nil
}

// expire drops keys whose TTL has passed; the caller holds mu.
func (s *Store) expire(now time.Time) {
	for el := s.byAge.Front(); el != nil && !now.Before(el.Value.(*keyEntry).expires); el = s.byAge.Front() {
		s.forget(el)
	}
}

func (s *Store) forget(el *list.Element) {
	delete(s.keys, el.Value.(*keyEntry).key)
	s.byAge.Remove(el)
}

// Get returns a copy of the order, or orderbiz.ErrNotFound.
func (s *Store) Get(_ context.Context, id string) (*orderbiz.Order, error) {
	s.mu.Lock()
	o, ok := s.orders[id]
	s.mu.Unlock()
	if !ok {
		return nil, orderbiz.ErrNotFound
	}
	return &o, nil
}

// ListByUser returns copies of at most limit of the user's orders with Seq
// above after, oldest first. It seeks to after by binary search, the
// memory store's keyset: a page costs O(log n + limit), not O(n).
func (s *Store) ListByUser(_ context.Context, userID string, limit int, after int64) ([]*orderbiz.Order, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.byUser[userID]
	start, _ := slices.BinarySearchFunc(list, after+1, func(e userOrder, seq int64) int { return cmp.Compare(e.seq, seq) })
	list = list[start:min(len(list), start+max(limit, 0))]
	out := make([]*orderbiz.Order, 0, len(list))
	for _, e := range list {
		o := s.orders[e.id]
		out = append(out, &o)
	}
	return out, nil
}

// RememberedKeys reports how many idempotency keys are held.
func (s *Store) RememberedKeys(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byAge.Len(), nil
}
