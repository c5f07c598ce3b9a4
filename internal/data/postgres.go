package data

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/rampart-go/rampart/internal/biz"
	"github.com/rampart-go/rampart/internal/conf"
)

// Postgres is an open PostgreSQL pool and the state of the service's
// schema on it.
type Postgres struct {
	Pool   *pgxpool.Pool
	Schema *SchemaState // check Schema.Err before using Pool
}

// OpenPostgres opens a pool on the database c names and applies the
// schema's pending migrations under the service's advisory lock; the
// cleanup closes the pool. The pool dials lazily and redials by itself: a
// database that goes away fails the calls that need it (fast, with the
// connect timeout) until it is back, and nothing here has to reconnect.
//
// A database unreachable at start (DatabaseError says so) does not fail
// the start: the process must come up and say what is wrong, as it does
// when Consul is down. OpenPostgres logs it at warn and returns the pool
// with its Schema pending, and a background goroutine retries the
// migrations with capped exponential backoff (1 s doubling to 30 s, with
// jitter), logging each failure at warn and the success at info; the
// cleanup stops it. Everything else is an error at start: a URL that does
// not parse (naming data.postgres.url) or a migration the server rejects
// (naming its version). Once the process is serving, a migration rejected
// by a database that came back is retried like an unreachable one, logged
// at warn with the cause, and the stores keep answering Unavailable.
func OpenPostgres(ctx context.Context, c conf.Postgres, s Schema, logger log.Logger) (*Postgres, func(), error) {
	pool, err := newPostgresPool(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	st := &SchemaState{}
	err = migratePool(ctx, pool, s)
	if err == nil {
		st.ready.Store(true)
		return &Postgres{Pool: pool, Schema: st}, pool.Close, nil
	}
	if !errors.Is(DatabaseError(ctx, err), biz.ErrDependencyUnavailable) {
		pool.Close()
		return nil, nil, fmt.Errorf("postgres: %w", err)
	}
	st.setPending(err)
	stop := migrateInBackground(pool, s, st, err, logger)
	return &Postgres{Pool: pool, Schema: st}, func() { stop(); pool.Close() }, nil
}

// migratePool applies s's pending migrations through a database/sql view
// of pool.
func migratePool(ctx context.Context, pool *pgxpool.Pool, s Schema) error {
	db := sqlDB(pool)
	defer func() { _ = db.Close() }() // the pool stays open
	return s.migrateUp(ctx, conf.DriverPostgres, db)
}

// newPostgresPool builds the pool from data.postgres: url (empty: the PG*
// variables), max_conns, connect_timeout, and statement_timeout sent as
// the session's statement_timeout parameter.
func newPostgresPool(ctx context.Context, c conf.Postgres) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(c.URL)
	if err != nil {
		return nil, fmt.Errorf("data.postgres.url: %w", err) // pgx masks the password
	}
	pc.MaxConns = c.MaxConns
	pc.ConnConfig.ConnectTimeout = c.ConnectTimeout
	pc.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(c.StatementTimeout.Milliseconds(), 10)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return pool, nil
}

// sqlDB is a database/sql view of the pool, for goose; closing it leaves
// the pool open.
func sqlDB(pool *pgxpool.Pool) *sql.DB { return stdlib.OpenDBFromPool(pool) }

// databaseDependency names the database in a biz.DependencyError.
const databaseDependency = "database"

// DatabaseError makes a failure to reach the database a
// biz.DependencyError for the dependency "database", so the call answers
// Unavailable at once (and tells callers not to retry: every instance
// shares the database) instead of Internal. Reaching it means: the dial
// failed (refused, timed out within connect_timeout), the connection broke,
// or the server is shutting down or starting (SQLSTATE classes 08 and
// 57P0x). A query the server rejected, a missing row, and the caller's own
// cancellation or deadline pass through unchanged. Nil stays nil.
func DatabaseError(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P0") {
			return &biz.DependencyError{Dependency: databaseDependency, Err: err}
		}
		return err
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.Timeout(err) {
		return &biz.DependencyError{Dependency: databaseDependency, Err: err}
	}
	return err
}
