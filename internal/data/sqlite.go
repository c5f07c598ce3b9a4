package data

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"

	_ "modernc.org/sqlite" // the pure-Go driver: no cgo, builds anywhere Go does

	"github.com/rampart-go/rampart/internal/conf"
)

// OpenSQLite opens (creating if needed) the database file every instance of
// a service on this host shares and applies the schema's pending
// migrations, one instance at a time; the cleanup closes the database.
func OpenSQLite(ctx context.Context, path string, s Schema) (*sql.DB, func(), error) {
	unlock, err := lockSQLiteMigrations(path)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	db, err := openSQLiteDB(path)
	if err != nil {
		return nil, nil, err
	}
	if err := s.migrateUp(ctx, conf.DriverSQLite, db); err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	return db, func() { _ = db.Close() }, nil
}

// openSQLiteDB opens path. WAL lets readers run beside the single writer;
// busy_timeout makes a writer wait for another process's transaction
// instead of failing; _txlock=immediate takes the write lock at BEGIN, so a
// read-then-insert transaction cannot interleave with another process's.
func openSQLiteDB(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	return db, nil
}

// WriteGate lets one goroutine of this process write at a time. SQLite
// allows one writer per database anyway; without the gate every other
// writer spins in SQLite's busy handler, which sleeps in growing steps (up
// to 100 ms each), so under load a write waits seconds for a lock that was
// free most of the time. Waiting here is a channel receive, and it gives up
// with the caller's context. Every SQL store holds one per database it
// writes and brackets each write transaction with Acquire and Release.
type WriteGate chan struct{}

// NewWriteGate returns an open gate.
func NewWriteGate() WriteGate { return make(WriteGate, 1) }

// Acquire waits for the gate, or returns the context's error wrapped.
func (g WriteGate) Acquire(ctx context.Context) error {
	select {
	case g <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the database write lock: %w", ctx.Err())
	}
}

// Release opens the gate for the next writer.
func (g WriteGate) Release() { <-g }
