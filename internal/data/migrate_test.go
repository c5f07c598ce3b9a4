package data_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/jackc/pgx/v5"

	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/data"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// testSchema has two migrations, the second altering the first's table.
var testSchema = data.Schema{Name: "test", FS: os.DirFS("testdata")}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func sqliteData(t *testing.T) conf.Data {
	t.Helper()
	c := conf.Default().Data
	c.Driver = conf.DriverSQLite
	c.SQLite.Path = filepath.Join(t.TempDir(), "test.db")
	return c
}

func postgresData(t *testing.T) conf.Data {
	t.Helper()
	c := conf.Default().Data
	c.Driver = conf.DriverPostgres
	c.Postgres.URL = devstacktest.Postgres(t)
	return c
}

// migrate runs one command and returns what it printed.
func migrate(t *testing.T, c conf.Data, command string) string {
	t.Helper()
	var out bytes.Buffer
	if err := data.Migrate(testContext(t), c, testSchema, command, &out); err != nil {
		t.Fatalf("migrate %s: %v\n%s", command, err, out.String())
	}
	return out.String()
}

// Up, down to version 0 and up again work on both drivers, and status
// says what is applied.
func TestMigrateUpDownUp(t *testing.T) {
	for name, open := range map[string]func(*testing.T) conf.Data{"sqlite": sqliteData, "postgres": postgresData} {
		t.Run(name, func(t *testing.T) {
			c := open(t)
			if out := migrate(t, c, data.MigrateStatus); strings.Count(out, "pending") != 2 {
				t.Fatalf("status before up, want 2 pending:\n%s", out)
			}
			migrate(t, c, data.MigrateUp)
			if out := migrate(t, c, data.MigrateUp); !strings.Contains(out, "no migrations to apply") {
				t.Fatalf("second up applied something:\n%s", out)
			}
			if out := migrate(t, c, data.MigrateStatus); strings.Count(out, "applied") != 2 {
				t.Fatalf("status after up, want 2 applied:\n%s", out)
			}
			migrate(t, c, data.MigrateDown)
			migrate(t, c, data.MigrateDown)
			if out := migrate(t, c, data.MigrateDown); !strings.Contains(out, "no migrations to roll back") {
				t.Fatalf("down at version 0:\n%s", out)
			}
			if out := migrate(t, c, data.MigrateStatus); strings.Count(out, "pending") != 2 {
				t.Fatalf("status after down to 0, want 2 pending:\n%s", out)
			}
			migrate(t, c, data.MigrateUp)
			if out := migrate(t, c, data.MigrateStatus); strings.Count(out, "applied") != 2 {
				t.Fatalf("status after up again, want 2 applied:\n%s", out)
			}
		})
	}
}

// Instances that start together on one PostgreSQL database migrate once:
// the advisory lock lets one apply while the others wait, then find
// nothing pending.
func TestOpenPostgresMigratesOnceUnderTheLock(t *testing.T) {
	c := postgresData(t)
	ctx := testContext(t)
	const instances = 4
	var wg sync.WaitGroup
	errs := make([]error, instances)
	for i := range instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, cleanup, err := data.OpenPostgres(ctx, c.Postgres, testSchema, log.DefaultLogger)
			if err == nil {
				cleanup()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
	}
	conn, err := pgx.Connect(ctx, c.Postgres.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var applied int
	if err := conn.QueryRow(ctx, `SELECT COUNT(*) FROM test_schema_version WHERE version_id > 0`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied != 2 {
		t.Fatalf("%d migrations recorded after %d concurrent starts, want 2 (each applied once)", applied, instances)
	}
}

// A URL that does not parse stops the start with the key named.
func TestOpenPostgresBadURLNamesTheKey(t *testing.T) {
	c := conf.Default().Data.Postgres
	c.URL = "postgres://u:secret@localhost:notaport/db"
	_, _, err := data.OpenPostgres(testContext(t), c, testSchema, log.DefaultLogger)
	if err == nil || !strings.Contains(err.Error(), "data.postgres.url") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("OpenPostgres(bad url) = %v; want an error naming data.postgres.url without the password", err)
	}
}
