package devstacktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rampart-go/rampart/internal/devstack"
)

// EnvTestDatabaseURL points the tests at an existing PostgreSQL server
// (a superuser's URL): each test then gets a fresh database on it instead
// of a server of its own.
const EnvTestDatabaseURL = "RAMPART_TEST_DATABASE_URL"

// postgresTimeout covers initdb and the server's start on a loaded
// machine.
const postgresTimeout = 2 * time.Minute

// PostgresServer returns the URL of a PostgreSQL server for this test: the
// one RAMPART_TEST_DATABASE_URL names, or a fresh one (OwnPostgres).
func PostgresServer(tb testing.TB) string {
	tb.Helper()
	if u := os.Getenv(EnvTestDatabaseURL); u != "" {
		return u
	}
	return OwnPostgres(tb).DSN("postgres")
}

// OwnPostgres starts a PostgreSQL server of the test's own
// (devstack.StartPostgres), whatever RAMPART_TEST_DATABASE_URL says, for a
// test that stops and starts it; it is stopped in tb.Cleanup, with its
// log's tail printed when the test failed.
func OwnPostgres(tb testing.TB) *devstack.Postgres {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), postgresTimeout)
	defer cancel()
	logDir := tb.TempDir()
	pg, err := devstack.StartPostgres(ctx, devstack.WithPostgresLogDir(logDir))
	if err != nil {
		tb.Fatalf("postgres for test: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("postgres log tail (%s):\n%s", pg.LogPath(), devstack.LogTail(pg.LogPath(), logTailLines))
		}
		if err := pg.Stop(); err != nil {
			tb.Errorf("stop postgres: %v", err)
		}
	})
	return pg
}

// PostgresDatabase creates a database with a fresh name on the server at
// serverURL, returns its URL and drops it in tb.Cleanup.
func PostgresDatabase(tb testing.TB, serverURL string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), postgresTimeout)
	defer cancel()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "rampart_test_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		tb.Fatalf("postgres for test: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err = conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("postgres for test: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, cerr := pgx.Connect(ctx, serverURL)
		if cerr != nil {
			return // the server is gone, and the database with it
		}
		defer func() { _ = c.Close(ctx) }()
		if _, derr := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); derr != nil {
			tb.Errorf("drop test database %s: %v", name, derr)
		}
	})
	u, err := url.Parse(serverURL)
	if err != nil {
		tb.Fatalf("postgres for test: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// Postgres returns the URL of a fresh, empty database for this test, on
// the server PostgresServer gives it.
func Postgres(tb testing.TB) string {
	tb.Helper()
	return PostgresDatabase(tb, PostgresServer(tb))
}
