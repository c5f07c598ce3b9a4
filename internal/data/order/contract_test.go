package order_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/google/uuid"

	"github.com/rampart-go/rampart/internal/biz"
	orderbiz "github.com/rampart-go/rampart/internal/biz/order"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/data"
	orderdata "github.com/rampart-go/rampart/internal/data/order"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// orderStore is what the contract needs beyond orderbiz.Repo.
type orderStore interface {
	orderbiz.Repo
	RememberedKeys(ctx context.Context) (int, error)
}

// orderDrivers returns a constructor per driver, so every contract test
// below runs against both and the drivers cannot drift apart.
func orderDrivers() map[string]func(t *testing.T, opts ...orderdata.Option) orderStore {
	return map[string]func(t *testing.T, opts ...orderdata.Option) orderStore{
		"memory": func(_ *testing.T, opts ...orderdata.Option) orderStore {
			return orderdata.NewStore(opts...)
		},
		"sqlite": func(t *testing.T, opts ...orderdata.Option) orderStore {
			s, cleanup, err := orderdata.NewSQLStore(testContext(t), filepath.Join(t.TempDir(), "order.db"), opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cleanup)
			return s
		},
		"postgres": func(t *testing.T, opts ...orderdata.Option) orderStore {
			return openPG(t, devstacktest.Postgres(t), opts...)
		},
	}
}

// openPG is one order instance's store on the database at url: its own
// pool, the schema migrated, closed when the test ends.
func openPG(t *testing.T, url string, opts ...orderdata.Option) *orderdata.PGStore {
	t.Helper()
	c := conf.Default().Data.Postgres
	c.URL = url
	db, closePool, err := data.OpenPostgres(testContext(t), c, orderdata.Schema, log.DefaultLogger)
	if err != nil {
		t.Fatal(err)
	}
	s := orderdata.NewPGStore(db, opts...)
	t.Cleanup(func() { s.Close(); closePool() })
	return s
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newOrder(userID string) *orderbiz.Order {
	return &orderbiz.Order{UserID: userID, Item: "book", Quantity: 2}
}

func TestRepoCreateOnce(t *testing.T) {
	for name, open := range orderDrivers() {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			repo := open(t)
			userID := uuid.NewString()
			first, created, err := repo.CreateOnce(ctx, "k1", newOrder(userID))
			if err != nil || !created {
				t.Fatalf("first CreateOnce = %v, created=%v", err, created)
			}
			again, created, err := repo.CreateOnce(ctx, "k1", &orderbiz.Order{UserID: userID, Item: "other", Quantity: 9})
			if err != nil || created {
				t.Fatalf("repeat CreateOnce = %v, created=%v; want the stored order", err, created)
			}
			if *again != *first {
				t.Fatalf("repeat returned %+v, want the first order %+v", again, first)
			}
			second, created, err := repo.CreateOnce(ctx, "k2", newOrder(userID))
			if err != nil || !created || second.ID == first.ID {
				t.Fatalf("new key: %+v created=%v err=%v", second, created, err)
			}
			list, err := repo.ListByUser(ctx, userID, 100, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 2 || list[0].ID != first.ID || list[1].ID != second.ID {
				t.Fatalf("ListByUser = %+v, want [%s %s] oldest first", list, first.ID, second.ID)
			}
			if got, err := repo.Get(ctx, first.ID); err != nil || *got != *first {
				t.Fatalf("Get = %+v, %v", got, err)
			}
			if _, err := repo.Get(ctx, uuid.NewString()); !errors.Is(err, orderbiz.ErrNotFound) {
				t.Fatalf("Get(unknown) error = %v, want ErrNotFound", err)
			}
			if list, err := repo.ListByUser(ctx, uuid.NewString(), 100, 0); err != nil || len(list) != 0 {
				t.Fatalf("ListByUser(no orders) = %v, %v; want empty", list, err)
			}
		})
	}
}

func TestRepoConcurrentRetriesCreateOne(t *testing.T) {
	for name, open := range orderDrivers() {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			repo := open(t)
			userID := uuid.NewString()
			const callers = 32
			ids := make([]string, callers)
			errs := make([]error, callers)
			var wg sync.WaitGroup
			for i := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					o, _, err := repo.CreateOnce(ctx, "same-key", newOrder(userID))
					if err == nil {
						ids[i] = o.ID
					}
					errs[i] = err
				}()
			}
			wg.Wait()
			for i := range callers {
				if errs[i] != nil {
					t.Fatalf("caller %d: %v", i, errs[i])
				}
				if ids[i] != ids[0] {
					t.Fatalf("caller %d got order %s, caller 0 got %s", i, ids[i], ids[0])
				}
			}
			if list, _ := repo.ListByUser(ctx, userID, 100, 0); len(list) != 1 {
				t.Fatalf("%d orders stored, want 1", len(list))
			}
		})
	}
}

func TestRepoKeyExpires(t *testing.T) {
	for name, open := range orderDrivers() {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var mu sync.Mutex
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
			repo := open(t, orderdata.WithIdempotencyTTL(time.Hour), orderdata.WithClock(clock))
			first, _, err := repo.CreateOnce(ctx, "k", newOrder(uuid.NewString()))
			if err != nil {
				t.Fatal(err)
			}
			advance(59 * time.Minute)
			if o, created, _ := repo.CreateOnce(ctx, "k", newOrder(first.UserID)); created || o.ID != first.ID {
				t.Fatalf("key forgotten before its TTL: created=%v id=%s", created, o.ID)
			}
			advance(time.Minute)
			o, created, err := repo.CreateOnce(ctx, "k", newOrder(first.UserID))
			if err != nil || !created || o.ID == first.ID {
				t.Fatalf("key still remembered after its TTL: created=%v err=%v", created, err)
			}
			// The expired key's order itself stays: only the key is forgotten.
			if _, err := repo.Get(ctx, first.ID); err != nil {
				t.Fatalf("order of expired key lost: %v", err)
			}
		})
	}
}

// Only the memory store has a cap; the SQL stores keep every key for its
// TTL (TestSQLKeysOutliveTheCapacity).
func TestRepoCapacityForgetsOldest(t *testing.T) {
	for name, open := range orderDrivers() {
		if name != "memory" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			repo := open(t, orderdata.WithIdempotencyCapacity(3))
			userID := uuid.NewString()
			firstIDs := map[string]string{}
			for _, k := range []string{"a", "b", "c", "d", "e"} {
				o, _, err := repo.CreateOnce(ctx, k, newOrder(userID))
				if err != nil {
					t.Fatal(err)
				}
				firstIDs[k] = o.ID
			}
			if n, err := repo.RememberedKeys(ctx); err != nil || n != 3 {
				t.Fatalf("RememberedKeys = %d, %v; want 3", n, err)
			}
			for _, k := range []string{"c", "d", "e"} {
				if o, created, _ := repo.CreateOnce(ctx, k, newOrder(userID)); created || o.ID != firstIDs[k] {
					t.Fatalf("recent key %q was forgotten", k)
				}
			}
			if _, created, _ := repo.CreateOnce(ctx, "a", newOrder(userID)); !created {
				t.Fatal("oldest key a still remembered past capacity")
			}
		})
	}
}

// Two stores on one database stand for two order instances (on one host
// for SQLite, on any for PostgreSQL): concurrent retries of one request
// landing on either instance create one order.
func TestSharedAcrossInstances(t *testing.T) {
	pair := map[string]func(t *testing.T) (a, b orderStore){
		"sqlite": func(t *testing.T) (orderStore, orderStore) {
			path := filepath.Join(t.TempDir(), "order.db")
			open := func() orderStore {
				s, cleanup, err := orderdata.NewSQLStore(testContext(t), path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(cleanup)
				return s
			}
			return open(), open()
		},
		"postgres": func(t *testing.T) (orderStore, orderStore) {
			url := devstacktest.Postgres(t)
			return openPG(t, url), openPG(t, url)
		},
	}
	for name, open := range pair {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			a, b := open(t)
			userID := uuid.NewString()
			var wg sync.WaitGroup
			results := make([]*orderbiz.Order, 20)
			for i := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					store := a
					if i%2 == 1 {
						store = b
					}
					o, _, err := store.CreateOnce(ctx, "retry-key", newOrder(userID))
					if err != nil {
						t.Errorf("instance %d: %v", i%2, err)
						return
					}
					results[i] = o
				}()
			}
			wg.Wait()
			for i, o := range results {
				if o == nil || o.ID != results[0].ID {
					t.Fatalf("result %d = %+v, want order %s", i, o, results[0].ID)
				}
			}
			if list, _ := b.ListByUser(ctx, userID, 100, 0); len(list) != 1 {
				t.Fatalf("%d orders stored across instances, want 1", len(list))
			}
		})
	}
}

// sweepingStore is a SQL store with its sweep.
type sweepingStore interface {
	orderStore
	Sweep(ctx context.Context) (int, error)
}

// The SQL stores' sweep deletes expired keys only, in batches, and leaves
// the orders; no cap forgets a key inside its TTL.
func TestSQLSweepDeletesExpiredKeys(t *testing.T) {
	drivers := orderDrivers()
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var mu sync.Mutex
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			s := drivers[name](t, orderdata.WithIdempotencyTTL(time.Hour), orderdata.WithClock(clock),
				orderdata.WithSweepInterval(time.Hour), orderdata.WithIdempotencyCapacity(10)).(sweepingStore)
			userID := uuid.NewString()
			var first *orderbiz.Order
			for i := range 2500 {
				o, _, err := s.CreateOnce(ctx, fmt.Sprintf("old-%d", i), newOrder(userID))
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					first = o
				}
			}
			if again, created, err := s.CreateOnce(ctx, "old-0", newOrder(userID)); err != nil || created || again.ID != first.ID {
				t.Fatalf("the first of 2500 keys was forgotten inside its TTL (capacity 10 must not apply): created=%v err=%v", created, err)
			}
			mu.Lock()
			now = now.Add(30 * time.Minute)
			mu.Unlock()
			if _, _, err := s.CreateOnce(ctx, "young", newOrder(userID)); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			now = now.Add(40 * time.Minute)
			mu.Unlock()
			n, err := s.Sweep(ctx)
			if err != nil || n != 2500 {
				t.Fatalf("Sweep = %d, %v; want the 2500 expired keys", n, err)
			}
			if left, _ := s.RememberedKeys(ctx); left != 1 {
				t.Fatalf("%d keys left, want the young one", left)
			}
			if _, err := s.Get(ctx, first.ID); err != nil {
				t.Fatalf("order of a swept key lost: %v", err)
			}
		})
	}
}

// With the database gone, calls fail at once with
// biz.ErrDependencyUnavailable (Unavailable at the service boundary), not
// after the deadline and not as an internal error: first on the pooled
// connection the shutdown broke, then on the refused dial. Once it is
// back, the same store works again without being reopened.
func TestPGDatabaseDownFailsFastAndRecovers(t *testing.T) {
	ctx := testContext(t)
	pg := devstacktest.OwnPostgres(t)
	s := openPG(t, pg.DSN("postgres"))
	o, _, err := s.CreateOnce(ctx, "k", newOrder(uuid.NewString()))
	if err != nil {
		t.Fatal(err)
	}
	if err = pg.Halt(); err != nil {
		t.Fatal(err)
	}
	for _, call := range []string{"broken connection", "refused dial"} {
		start := time.Now()
		_, getErr := s.Get(ctx, o.ID)
		if took := time.Since(start); !errors.Is(getErr, biz.ErrDependencyUnavailable) || took > 2*time.Second {
			t.Fatalf("%s: Get = %v after %s; want ErrDependencyUnavailable at once", call, getErr, took)
		}
	}
	if _, _, err = s.CreateOnce(ctx, "k2", newOrder(uuid.NewString())); !errors.Is(err, biz.ErrDependencyUnavailable) {
		t.Fatalf("CreateOnce = %v; want ErrDependencyUnavailable", err)
	}
	if err = pg.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, o.ID); err != nil || got.ID != o.ID {
		t.Fatalf("Get after the database came back = %+v, %v", got, err)
	}
	if again, created, err := s.CreateOnce(ctx, "k", newOrder(o.UserID)); err != nil || created || again.ID != o.ID {
		t.Fatalf("key lost across the restart: %+v created=%v err=%v", again, created, err)
	}
}

// A database down when the order service starts: NewRepo still returns
// the store, whose every call answers at once with Unavailable (never
// "relation does not exist"), and the store works once the database is
// back and the background migration has run.
func TestPGDatabaseDownAtStartFailsFastThenServes(t *testing.T) {
	ctx := testContext(t)
	pg := devstacktest.OwnPostgres(t)
	if err := pg.Halt(); err != nil {
		t.Fatal(err)
	}
	c := conf.Default().Data
	c.Driver = conf.DriverPostgres
	c.Postgres.URL = pg.DSN("postgres")
	repo, cleanup, err := orderdata.NewRepo(c, log.DefaultLogger)
	if err != nil {
		t.Fatalf("NewRepo with the database down = %v; want the store", err)
	}
	t.Cleanup(cleanup)
	userID := uuid.NewString()
	calls := map[string]func() error{
		"CreateOnce": func() (err error) { _, _, err = repo.CreateOnce(ctx, "k", newOrder(userID)); return err },
		"Get":        func() (err error) { _, err = repo.Get(ctx, uuid.NewString()); return err },
		"ListByUser": func() (err error) { _, err = repo.ListByUser(ctx, userID, 10, 0); return err },
	}
	for name, call := range calls {
		start := time.Now()
		if err = call(); !errors.Is(err, biz.ErrDependencyUnavailable) || time.Since(start) > 100*time.Millisecond {
			t.Fatalf("%s before the schema = %v after %s; want ErrDependencyUnavailable at once", name, err, time.Since(start))
		}
	}
	if err = pg.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	for {
		o, created, err := repo.CreateOnce(ctx, "k", newOrder(userID))
		if err == nil {
			if !created || o.UserID != userID {
				t.Fatalf("CreateOnce after recovery = %+v created=%v", o, created)
			}
			break
		}
		if !errors.Is(err, biz.ErrDependencyUnavailable) || time.Since(resumed) > 10*time.Second {
			t.Fatalf("CreateOnce %s after Resume = %v; want the store serving within 10s", time.Since(resumed), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("serving %s after Resume", time.Since(resumed).Round(time.Millisecond))
}

// A database file written before migrations existed (schema created at
// open) is adopted as version 1: its orders stay readable.
func TestSQLStoreAdoptsAPreMigrationFile(t *testing.T) {
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "order.db")
	old, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = old.ExecContext(ctx, `
CREATE TABLE orders (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL, item TEXT NOT NULL, quantity INTEGER NOT NULL);
CREATE INDEX orders_by_user ON orders (user_id, seq);
CREATE TABLE idempotency_keys (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, order_id TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
INSERT INTO orders (id, user_id, item, quantity) VALUES ('o1', 'u1', 'book', 1);`)
	_ = old.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, cleanup, err := orderdata.NewSQLStore(ctx, path)
	if err != nil {
		t.Fatalf("open a pre-migration file: %v", err)
	}
	defer cleanup()
	if o, err := s.Get(ctx, "o1"); err != nil || o.Item != "book" {
		t.Fatalf("Get(o1) = %+v, %v; want the order written before migrations", o, err)
	}
}

// BenchmarkCreateOnce measures the SQL stores' create path, new key each
// call, from as many goroutines as GOMAXPROCS: one SQLite file, and one
// PostgreSQL database on a local throwaway server (fsync off, as in every
// test here; a production server syncs and is slower per commit).
func BenchmarkCreateOnce(b *testing.B) {
	stores := map[string]func(b *testing.B) orderbiz.Repo{
		"sqlite": func(b *testing.B) orderbiz.Repo {
			s, cleanup, err := orderdata.NewSQLStore(context.Background(), filepath.Join(b.TempDir(), "order.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(cleanup)
			return s
		},
		"postgres": func(b *testing.B) orderbiz.Repo {
			c := conf.Default().Data.Postgres
			c.URL = devstacktest.Postgres(b)
			db, closePool, err := data.OpenPostgres(context.Background(), c, orderdata.Schema, log.DefaultLogger)
			if err != nil {
				b.Fatal(err)
			}
			s := orderdata.NewPGStore(db)
			b.Cleanup(func() { s.Close(); closePool() })
			return s
		},
	}
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			repo := stores[name](b)
			ctx := context.Background()
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := repo.CreateOnce(ctx, uuid.NewString(), newOrder("bench-user")); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// createOrders stores n orders of userID and returns their IDs, oldest first.
func createOrders(t *testing.T, ctx context.Context, repo orderbiz.Repo, userID string, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for range n {
		o, _, err := repo.CreateOnce(ctx, uuid.NewString(), newOrder(userID))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, o.ID)
	}
	return ids
}

// pageAll reads every page of userID's orders, size at a time, the way the
// use case does, and returns the IDs and the size of each page. It fails
// when a page is out of Seq order or the pages do not end.
func pageAll(t *testing.T, ctx context.Context, repo orderbiz.Repo, userID string, size int, between func()) (ids []string, sizes []int) {
	t.Helper()
	var after int64
	for range 1000 {
		page, err := repo.ListByUser(ctx, userID, size, after)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page {
			if o.Seq <= after {
				t.Fatalf("order %s has Seq %d after %d: pages out of order", o.ID, o.Seq, after)
			}
			if o.UserID != userID {
				t.Fatalf("order %s of user %s in the list of %s", o.ID, o.UserID, userID)
			}
			after = o.Seq
			ids = append(ids, o.ID)
		}
		sizes = append(sizes, len(page))
		if len(page) < size {
			return ids, sizes
		}
		between()
	}
	t.Fatal("pages do not end")
	return nil, nil
}

func TestRepoListByUserPages(t *testing.T) {
	cases := []struct {
		name      string
		orders    int
		size      int
		wantSizes []int
	}{
		{"no orders", 0, 3, []int{0}},
		{"exact multiple of the page size", 6, 3, []int{3, 3, 0}},
		{"a short last page", 7, 3, []int{3, 3, 1}},
		{"one page larger than the list", 2, 10, []int{2}},
	}
	for name, open := range orderDrivers() {
		t.Run(name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					ctx := testContext(t)
					repo := open(t)
					userID, other := uuid.NewString(), uuid.NewString()
					var want []string
					// Another user's orders between this user's must not show.
					for range tc.orders {
						want = append(want, createOrders(t, ctx, repo, userID, 1)...)
						createOrders(t, ctx, repo, other, 1)
					}
					got, sizes := pageAll(t, ctx, repo, userID, tc.size, func() {})
					if !slices.Equal(got, want) || !slices.Equal(sizes, tc.wantSizes) {
						t.Fatalf("pages of sizes %v holding %v, want %v holding %v", sizes, got, tc.wantSizes, want)
					}
				})
			}
		})
	}
}

// Orders created while a caller pages, by other goroutines and between the
// caller's pages, never make it see an order twice or miss one that existed
// when it read the first page; they come after those, in order.
func TestRepoPagingWhileOrdersAreCreated(t *testing.T) {
	for name, open := range orderDrivers() {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			repo := open(t)
			userID := uuid.NewString()
			existing := createOrders(t, ctx, repo, userID, 20)

			stop := make(chan struct{})
			var wg sync.WaitGroup
			stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
			t.Cleanup(stopWriters) // also when the test fails first
			// Each writer is bounded in count as well as stopped at the tenth page: the memory store
			// writes so fast that writers bounded only in time outran the paging (CI saw thousands).
			const perWriter = 200
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range perWriter {
						select {
						case <-stop:
							return
						default:
						}
						if _, _, err := repo.CreateOnce(ctx, uuid.NewString(), newOrder(userID)); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			pages := 0
			got, _ := pageAll(t, ctx, repo, userID, 3, func() {
				pages++
				createOrders(t, ctx, repo, userID, 1) // between two pages, for sure
				if pages == 10 {
					stopWriters() // so the list ends
				}
			})
			stopWriters()
			seen := make(map[string]bool, len(got))
			for _, id := range got {
				if seen[id] {
					t.Fatalf("order %s listed twice", id)
				}
				seen[id] = true
			}
			if len(got) < len(existing) || !slices.Equal(got[:len(existing)], existing) {
				t.Fatalf("the %d orders that existed at the first page do not lead the list in order", len(existing))
			}
			t.Logf("%d orders listed, %d of them created while paging", len(got), len(got)-len(existing))
		})
	}
}
