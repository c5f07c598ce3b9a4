package data

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"text/tabwriter"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/rampart-go/rampart/internal/conf"
)

// Schema is a service's versioned migrations, one goose set of SQL files
// per SQL driver (NNNNN_name.sql with -- +goose Up / Down sections),
// embedded in the binary. Both drivers go through the same goose Provider:
// applied up at every start, and by `<svc> migrate up|down|status`. Each
// service keeps its versions in its own table (<name>_schema_version), so
// services may share one PostgreSQL database without their versions
// mixing.
type Schema struct {
	Name string // the service's name
	// FS holds the migrations: the SQLite set in migrations/sqlite, the
	// PostgreSQL set in migrations/postgres.
	FS fs.FS
}

func (s Schema) table() string { return s.Name + "_schema_version" }

// lockID is the service's PostgreSQL advisory lock key: a hash of its
// name, so two services migrating one database do not wait for each other.
func (s Schema) lockID() int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("rampart-migrate:" + s.Name))
	return int64(h.Sum64() >> 1)
}

// provider builds the goose provider for db. On PostgreSQL it takes the
// service's session advisory lock for the whole run, polling every second
// for up to 5 minutes, so instances that start together migrate once: the
// first applies, the others find nothing pending.
func (s Schema) provider(driver string, db *sql.DB) (*goose.Provider, error) {
	opts := []goose.ProviderOption{goose.WithTableName(s.table()), goose.WithDisableGlobalRegistry(true)}
	dialect := goose.DialectSQLite3
	switch driver {
	case conf.DriverSQLite:
	case conf.DriverPostgres:
		dialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(s.lockID()), lock.WithLockTimeout(1, 300))
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	default:
		return nil, fmt.Errorf("data.driver %s keeps no schema to migrate", driver)
	}
	dir, err := fs.Sub(s.FS, "migrations/"+driver)
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(dialect, db, dir, opts...)
}

// migrateUp applies every pending migration.
func (s Schema) migrateUp(ctx context.Context, driver string, db *sql.DB) error {
	p, err := s.provider(driver, db)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", s.Name, err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s up: %w", s.Name, err)
	}
	return nil
}

// Migration commands of `<svc> migrate`.
const (
	MigrateUp     = "up"     // apply every pending migration
	MigrateDown   = "down"   // roll the newest applied migration back
	MigrateStatus = "status" // list every migration and whether it is applied
)

// Migrate runs one migration command against the database c names and
// writes what it did to w. It is the `<svc> migrate` subcommand; down
// rolls back one version per call.
func Migrate(ctx context.Context, c conf.Data, s Schema, command string, w io.Writer) error {
	var db *sql.DB
	switch c.Driver {
	case conf.DriverSQLite:
		unlock, err := lockSQLiteMigrations(c.SQLite.Path)
		if err != nil {
			return err
		}
		defer unlock()
		if db, err = openSQLiteDB(c.SQLite.Path); err != nil {
			return err
		}
	case conf.DriverPostgres:
		pool, err := newPostgresPool(ctx, c.Postgres)
		if err != nil {
			return err
		}
		defer pool.Close()
		db = sqlDB(pool)
	default:
		return fmt.Errorf("data.driver %s keeps no schema to migrate", c.Driver)
	}
	defer func() { _ = db.Close() }()
	p, err := s.provider(c.Driver, db)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", s.Name, err)
	}
	switch command {
	case MigrateUp:
		res, err := p.Up(ctx)
		for _, r := range res {
			_, _ = fmt.Fprintln(w, r)
		}
		if err != nil {
			return fmt.Errorf("migrate %s up: %w", s.Name, err)
		}
		if len(res) == 0 {
			_, _ = fmt.Fprintln(w, "no migrations to apply")
		}
	case MigrateDown:
		r, err := p.Down(ctx)
		if errors.Is(err, goose.ErrNoNextVersion) {
			_, _ = fmt.Fprintln(w, "no migrations to roll back")
			return nil
		}
		if err != nil {
			return fmt.Errorf("migrate %s down: %w", s.Name, err)
		}
		_, _ = fmt.Fprintln(w, r)
	case MigrateStatus:
		st, err := p.Status(ctx)
		if err != nil {
			return fmt.Errorf("migrate %s status: %w", s.Name, err)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		_, _ = fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tFILE")
		for _, m := range st {
			at := "-"
			if !m.AppliedAt.IsZero() {
				at = m.AppliedAt.UTC().Format("2006-01-02 15:04:05")
			}
			_, _ = fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", m.Source.Version, m.State, at, m.Source.Path)
		}
		_ = tw.Flush()
	default:
		return fmt.Errorf("migrate: unknown command %q (up, down or status)", command)
	}
	return nil
}

// lockSQLiteMigrations takes an exclusive flock beside the database file,
// so instances on this host starting together migrate one at a time (goose
// has no SQLite locker; the second finds nothing pending).
func lockSQLiteMigrations(path string) (unlock func(), err error) {
	if err = os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	f, err := os.OpenFile(path+".migrate.lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: migration lock: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("sqlite %s: migration lock: %w", path, err)
	}
	return func() { _ = f.Close() }, nil
}
