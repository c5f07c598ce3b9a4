package order

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"

	orderbiz "github.com/rampart-go/rampart/internal/biz/order"
	"github.com/rampart-go/rampart/internal/data"
)

// SQLStore keeps orders and the idempotency index in a SQLite file
// shared by every order instance on the host. Sharing is what makes the key
// work across instances: a retry that lands on another instance still finds
// the order the first attempt stored.
//
// Keys are not capped in number (data.idempotency.capacity does not
// apply): each is held for its whole TTL, and expired ones are deleted by
// a background sweep that the cleanup stops.
type SQLStore struct {
	keyOpts
	db     *sql.DB
	writes data.WriteGate
	sweep  *sweeper
}

var _ orderbiz.Repo = (*SQLStore)(nil)

// NewSQLStore opens path, creating the file if needed and migrating its
// schema up (see Schema); the cleanup closes the database.
func NewSQLStore(ctx context.Context, path string, opts ...Option) (*SQLStore, func(), error) {
	db, closeDB, err := data.OpenSQLite(ctx, path, Schema)
	if err != nil {
		return nil, nil, err
	}
	s := &SQLStore{keyOpts: newKeyOpts(opts), db: db, writes: data.NewWriteGate()}
	s.sweep = startSweeper(s.sweepInterval, s.Sweep)
	return s, func() { s.sweep.close(); closeDB() }, nil
}

// CreateOnce runs in one immediate transaction, which holds the database
// write lock from BEGIN: two instances handling retries of the same request
// are serialised, and the second finds the first one's key.
func (s *SQLStore) CreateOnce(ctx context.Context, key string, o *orderbiz.Order) (_ *orderbiz.Order, created bool, err error) {
	if err = s.writes.Acquire(ctx); err != nil {
		return nil, false, err
	}
	defer s.writes.Release()
	now := s.now().UnixNano()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var orderID string
	err = tx.QueryRowContext(ctx, `SELECT order_id FROM idempotency_keys WHERE key = ? AND expires_at > ?`, key, now).Scan(&orderID)
	switch {
	case err == nil:
		stored, getErr := getOrder(ctx, tx, orderID)
		if getErr != nil {
			return nil, false, getErr
		}
		return stored, false, tx.Commit()
	case !errors.Is(err, sql.ErrNoRows):
		return nil, false, fmt.Errorf("look up key: %w", err)
	}
	// An expired row of this key, not swept yet, gives way to the new one.
	if _, err = tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE key = ?`, key); err != nil {
		return nil, false, fmt.Errorf("expire key: %w", err)
	}

	stored := *o
	stored.ID = uuid.NewString()
	if _, err = tx.ExecContext(ctx, `INSERT INTO orders (id, user_id, item, quantity) VALUES (?, ?, ?, ?)`,
		stored.ID, stored.UserID, stored.Item, stored.Quantity); err != nil {
		return nil, false, fmt.Errorf("insert order: %w", err)
	}
	if _, err = tx.ExecContext(ctx, `INSERT INTO idempotency_keys (key, order_id, expires_at) VALUES (?, ?, ?)`,
		key, stored.ID, now+s.ttl.Nanoseconds()); err != nil {
		return nil, false, fmt.Errorf("insert key: %w", err)
	}
	if err = tx.Commit(); err != nil {
		return nil, false, fmt.Errorf("commit: %w", err)
	}
	return &stored, true, nil
}

// queryRower is what getOrder needs from a *sql.DB or a *sql.Tx.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getOrder(ctx context.Context, q queryRower, id string) (*orderbiz.Order, error) {
	o := orderbiz.Order{ID: id}
	err := q.QueryRowContext(ctx, `SELECT user_id, item, quantity FROM orders WHERE id = ?`, id).
		Scan(&o.UserID, &o.Item, &o.Quantity)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, orderbiz.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("select order: %w", err)
	}
	return &o, nil
}

// Get returns the order, or orderbiz.ErrNotFound.
func (s *SQLStore) Get(ctx context.Context, id string) (*orderbiz.Order, error) {
	return getOrder(ctx, s.db, id)
}

// ListByUser returns at most limit of the user's orders with seq above
// after, oldest first: a range scan of the (user_id, seq) index, so a page
// deep into a long list costs what the first one does.
func (s *SQLStore) ListByUser(ctx context.Context, userID string, limit int, after int64) ([]*orderbiz.Order, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT seq, id, item, quantity FROM orders WHERE user_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
		userID, after, max(limit, 0))
	if err != nil {
		return nil, fmt.Errorf("select orders: %w", err)
	}
	defer func() { _ = rows.Close() }()
	return scanOrders(rows, userID)
}

// orderRows is what database/sql's and pgx's result sets share, so both
// stores read a page of orders the same way.
type orderRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// scanOrders reads rows of (seq, id, item, quantity) of one user's orders.
func scanOrders(rows orderRows, userID string) ([]*orderbiz.Order, error) {
	out := []*orderbiz.Order{}
	for rows.Next() {
		o := &orderbiz.Order{UserID: userID}
		if err := rows.Scan(&o.Seq, &o.ID, &o.Item, &o.Quantity); err != nil {
			return nil, fmt.Errorf("scan order: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select orders: %w", err)
	}
	return out, nil
}

// Sweep deletes the keys expired by now, a batch per write transaction
// (each through the write gate, so a create waits for one batch at most),
// and returns how many went.
func (s *SQLStore) Sweep(ctx context.Context) (int, error) {
	total := 0
	for !s.sweep.stopped() {
		n, err := s.sweepBatch(ctx)
		total += n
		if err != nil || n < sweepBatch {
			return total, err
		}
	}
	return total, nil
}

func (s *SQLStore) sweepBatch(ctx context.Context) (int, error) {
	if err := s.writes.Acquire(ctx); err != nil {
		return 0, err
	}
	defer s.writes.Release()
	res, err := s.db.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE seq IN (
	SELECT seq FROM idempotency_keys WHERE expires_at <= ? LIMIT ?)`, s.now().UnixNano(), sweepBatch)
	if err != nil {
		return 0, fmt.Errorf("sweep keys: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sweep keys: %w", err)
	}
	return int(n), nil
}

// RememberedKeys reports how many idempotency keys are held, expired ones
// not yet swept included.
func (s *SQLStore) RememberedKeys(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM idempotency_keys`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count keys: %w", err)
	}
	return n, nil
}
