package order

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	orderbiz "github.com/rampart-go/rampart/internal/biz/order"
	"github.com/rampart-go/rampart/internal/data"
)

// PGStore keeps orders and their idempotency keys in PostgreSQL, one
// database shared by every order instance on every host: a retry that
// lands on any instance finds the order the first attempt stored. The key
// row and the order row are written in one transaction. Keys are not
// capped in number: each is held for its whole TTL, and expired ones are
// deleted by a background sweep that Close stops. What that costs,
// measured on PostgreSQL 15 with UUID keys: 201 bytes a key, table and both
// indexes (117 of them the row), so 100 creates a second under the default
// 24 h TTL hold 8.6 million keys, about 1.7 GB.
type PGStore struct {
	keyOpts
	pool   *pgxpool.Pool
	schema *data.SchemaState
	sweep  *sweeper
}

var _ orderbiz.Repo = (*PGStore)(nil)

// NewPGStore returns a store on db (data.OpenPostgres with Schema), and
// starts its sweep of expired keys. Until db's schema is migrated every
// call fails at once with a biz.DependencyError for the database (the
// sweep skips). WithIdempotencyCapacity does not apply. Close stops the
// sweep; it does not close the pool.
func NewPGStore(db *data.Postgres, opts ...Option) *PGStore {
	s := &PGStore{keyOpts: newKeyOpts(opts), pool: db.Pool, schema: db.Schema}
	s.sweep = startSweeper(s.sweepInterval, s.Sweep)
	return s
}

// Close stops the sweep and waits for it. Safe to call more than once.
func (s *PGStore) Close() { s.sweep.close() }

// CreateOnce claims key and inserts the order in one transaction. The
// claim is an INSERT … ON CONFLICT that takes over the key only if its
// row has expired, so of two concurrent creates with one key (on any
// instances) the second waits on the first's row lock, then finds the key
// live and returns the first's order; if the first rolled back, the second
// claims the key itself.
func (s *PGStore) CreateOnce(ctx context.Context, key string, o *orderbiz.Order) (_ *orderbiz.Order, created bool, err error) {
	if err = s.schema.Err(); err != nil {
		return nil, false, err
	}
	defer func() { err = data.DatabaseError(ctx, err) }()
	now := s.now()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	stored := *o
	stored.ID = uuid.NewString()
	var claimed string
	err = tx.QueryRow(ctx, `
INSERT INTO idempotency_keys (key, order_id, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (key) DO UPDATE SET order_id = EXCLUDED.order_id, expires_at = EXCLUDED.expires_at
	WHERE idempotency_keys.expires_at <= $4
RETURNING order_id`, key, stored.ID, now.Add(s.ttl), now).Scan(&claimed)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// The key is live: return the order it points at.
		var orderID string
		if err = tx.QueryRow(ctx, `SELECT order_id FROM idempotency_keys WHERE key = $1`, key).Scan(&orderID); err != nil {
			return nil, false, fmt.Errorf("look up key: %w", err)
		}
		prev, getErr := getPGOrder(ctx, tx, orderID)
		if getErr != nil {
			err = getErr
			return nil, false, err
		}
		return prev, false, tx.Commit(ctx)
	case err != nil:
		return nil, false, fmt.Errorf("claim key: %w", err)
	}
	if _, err = tx.Exec(ctx, `INSERT INTO orders (id, user_id, item, quantity) VALUES ($1, $2, $3, $4)`,
		stored.ID, stored.UserID, stored.Item, stored.Quantity); err != nil {
		return nil, false, fmt.Errorf("insert order: %w", err)
	}
	if err = tx.Commit(ctx); err != nil {
		return nil, false, fmt.Errorf("commit: %w", err)
	}
	return &stored, true, nil
}

// pgQueryRower is what getPGOrder needs from a pool or a transaction.
type pgQueryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func getPGOrder(ctx context.Context, q pgQueryRower, id string) (*orderbiz.Order, error) {
	o := orderbiz.Order{ID: id}
	err := q.QueryRow(ctx, `SELECT user_id, item, quantity FROM orders WHERE id = $1`, id).
		Scan(&o.UserID, &o.Item, &o.Quantity)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, orderbiz.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("select order: %w", err)
	}
	return &o, nil
}

// Get returns the order, or orderbiz.ErrNotFound.
func (s *PGStore) Get(ctx context.Context, id string) (*orderbiz.Order, error) {
	if err := s.schema.Err(); err != nil {
		return nil, err
	}
	o, err := getPGOrder(ctx, s.pool, id)
	return o, data.DatabaseError(ctx, err)
}

// ListByUser returns at most limit of the user's orders with seq above
// after, oldest first: a range scan of the orders_by_user (user_id, seq)
// index, never an OFFSET, so a deep page costs what the first one does.
func (s *PGStore) ListByUser(ctx context.Context, userID string, limit int, after int64) (_ []*orderbiz.Order, err error) {
	if err = s.schema.Err(); err != nil {
		return nil, err
	}
	defer func() { err = data.DatabaseError(ctx, err) }()
	rows, err := s.pool.Query(ctx,
		`SELECT seq, id, item, quantity FROM orders WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
		userID, after, max(limit, 0))
	if err != nil {
		return nil, fmt.Errorf("select orders: %w", err)
	}
	defer rows.Close()
	return scanOrders(rows, userID)
}

// RememberedKeys reports how many idempotency keys are held, expired ones
// not yet swept included.
func (s *PGStore) RememberedKeys(ctx context.Context) (int, error) {
	if err := s.schema.Err(); err != nil {
		return 0, err
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM idempotency_keys`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count keys: %w", err)
	}
	return n, nil
}

// Sweep deletes the keys expired by now, a batch per statement, and
// returns how many went. Instances sweeping at once skip each other's
// locked rows instead of waiting on them. Before the schema is migrated
// there is nothing to sweep: it returns the schema's error.
func (s *PGStore) Sweep(ctx context.Context) (int, error) {
	if err := s.schema.Err(); err != nil {
		return 0, err
	}
	total := 0
	for {
		if s.sweep.stopped() {
			return total, nil
		}
		tag, err := s.pool.Exec(ctx, `
DELETE FROM idempotency_keys WHERE key IN (
	SELECT key FROM idempotency_keys WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
			s.now(), sweepBatch)
		if err != nil {
			return total, fmt.Errorf("sweep keys: %w", err)
		}
		total += int(tag.RowsAffected())
		if tag.RowsAffected() < sweepBatch {
			return total, nil
		}
	}
}
