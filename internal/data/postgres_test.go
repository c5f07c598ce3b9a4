package data_test

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-kratos/kratos/v2/log"

	"github.com/rampart-go/rampart/internal/biz"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/data"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// syncBuffer is a log sink the migrator goroutine and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// haltedPostgres is a PostgreSQL server that was started and halted, so
// its port refuses connections until Resume; its URL carries a password
// (ignored: trust authentication) that no log line may show.
func haltedPostgres(t *testing.T) (*devstack.Postgres, conf.Postgres) {
	t.Helper()
	pg := devstacktest.OwnPostgres(t)
	if err := pg.Halt(); err != nil {
		t.Fatal(err)
	}
	c := conf.Default().Data.Postgres
	c.URL = strings.Replace(pg.DSN("postgres"), "postgres@", "postgres:s3cret@", 1)
	return pg, c
}

// waitFor polls cond every 50 ms for up to limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A database down at start does not fail the start: OpenPostgres returns
// the pool with the schema pending (its error Unavailable), logs why at
// warn without the password, and migrates in the background once the
// database is back.
func TestOpenPostgresUnreachableAtStartMigratesInBackground(t *testing.T) {
	ctx := testContext(t)
	pg, c := haltedPostgres(t)
	var out syncBuffer
	start := time.Now()
	db, cleanup, err := data.OpenPostgres(ctx, c, testSchema, log.NewStdLogger(&out))
	if err != nil {
		t.Fatalf("OpenPostgres with the database down = %v; want the pool, its schema pending", err)
	}
	defer cleanup()
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("OpenPostgres with the database down took %s; want at once", took)
	}
	if db.Schema.Ready() || !errors.Is(db.Schema.Err(), biz.ErrDependencyUnavailable) {
		t.Fatalf("schema before the database is back: ready=%v err=%v; want pending, Unavailable", db.Schema.Ready(), db.Schema.Err())
	}
	waitFor(t, 5*time.Second, "the warning", func() bool {
		return strings.Contains(out.String(), "database unreachable at start, retrying in")
	})
	if err := pg.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	waitFor(t, 10*time.Second, "the schema migrated after Resume", db.Schema.Ready)
	t.Logf("schema ready %s after Resume", time.Since(resumed).Round(time.Millisecond))
	if err := db.Schema.Err(); err != nil {
		t.Fatalf("Err once ready = %v", err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO things (id, name) VALUES ('a', 'b')`); err != nil {
		t.Fatalf("both migrations applied, yet: %v", err)
	}
	logged := out.String()
	if !strings.HasPrefix(logged, "WARN ") || !strings.Contains(logged, "\nINFO ") ||
		!strings.Contains(logged, "schema test migrated") || strings.Contains(logged, "s3cret") {
		t.Fatalf("log = %q; want the failure at warn, the success at info, no password", logged)
	}
}

// The cleanup stops the background retries while the database is still
// down, at once (TestMain checks no goroutine is left).
func TestOpenPostgresCleanupStopsTheRetries(t *testing.T) {
	ctx := testContext(t)
	_, c := haltedPostgres(t)
	db, cleanup, err := data.OpenPostgres(ctx, c, testSchema, log.NewStdLogger(&syncBuffer{}))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cleanup()
	if took := time.Since(start); took > time.Second {
		t.Fatalf("cleanup took %s; want at once", took)
	}
	if db.Schema.Ready() {
		t.Fatal("schema ready without a database")
	}
}

// A migration the server rejects is still an error at start, naming its
// version: only an unreachable database is retried in the background.
func TestOpenPostgresFailingMigrationFailsTheStart(t *testing.T) {
	c := postgresData(t)
	bad := data.Schema{Name: "bad", FS: fstest.MapFS{
		"migrations/postgres/00001_broken.sql": {Data: []byte("-- +goose Up\nCREATE TABLE nope (id NOSUCHTYPE);\n")},
	}}
	_, _, err := data.OpenPostgres(testContext(t), c.Postgres, bad, log.NewStdLogger(&syncBuffer{}))
	if err == nil || errors.Is(err, biz.ErrDependencyUnavailable) || !strings.Contains(err.Error(), "version:1") {
		t.Fatalf("OpenPostgres(broken migration) = %v; want an error at start naming version 1", err)
	}
}
