package user_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/google/uuid"

	"github.com/rampart-go/rampart/internal/biz"
	userbiz "github.com/rampart-go/rampart/internal/biz/user"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/data"
	userdata "github.com/rampart-go/rampart/internal/data/user"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// userDrivers returns a constructor per driver, so the contract below runs
// against both and the drivers cannot drift apart.
func userDrivers() map[string]func(t *testing.T) userbiz.Repo {
	return map[string]func(t *testing.T) userbiz.Repo{
		"memory": func(*testing.T) userbiz.Repo { return userdata.NewStore() },
		"sqlite": func(t *testing.T) userbiz.Repo {
			s, cleanup, err := userdata.NewSQLStore(testContext(t), filepath.Join(t.TempDir(), "user.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cleanup)
			return s
		},
		"postgres": func(t *testing.T) userbiz.Repo {
			c := conf.Default().Data.Postgres
			c.URL = devstacktest.Postgres(t)
			db, cleanup, err := data.OpenPostgres(testContext(t), c, userdata.Schema, log.DefaultLogger)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cleanup)
			return userdata.NewPGStore(db)
		},
	}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRepoContract(t *testing.T) {
	for name, open := range userDrivers() {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			repo := open(t)
			created, err := repo.Create(ctx, &userbiz.User{Name: "Ada", Email: "ada@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err = uuid.Parse(created.ID); err != nil {
				t.Fatalf("ID %q is not a UUID: %v", created.ID, err)
			}
			got, err := repo.Get(ctx, created.ID)
			if err != nil {
				t.Fatal(err)
			}
			if *got != *created {
				t.Fatalf("Get = %+v, want %+v", got, created)
			}
			if _, err = repo.Get(ctx, uuid.NewString()); !errors.Is(err, userbiz.ErrNotFound) {
				t.Fatalf("Get(unknown) error = %v, want ErrNotFound", err)
			}
		})
	}
}

// A database down when the user service starts: NewRepo still returns the
// store, which answers at once with Unavailable until the database is back
// and the background migration has run, then serves.
func TestPGDatabaseDownAtStartFailsFastThenServes(t *testing.T) {
	ctx := testContext(t)
	pg := devstacktest.OwnPostgres(t)
	if err := pg.Halt(); err != nil {
		t.Fatal(err)
	}
	c := conf.Default().Data
	c.Driver = conf.DriverPostgres
	c.Postgres.URL = pg.DSN("postgres")
	repo, cleanup, err := userdata.NewRepo(c, log.DefaultLogger)
	if err != nil {
		t.Fatalf("NewRepo with the database down = %v; want the store", err)
	}
	t.Cleanup(cleanup)
	ada := &userbiz.User{Name: "Ada", Email: "ada@example.com"}
	start := time.Now()
	if _, err = repo.Create(ctx, ada); !errors.Is(err, biz.ErrDependencyUnavailable) {
		t.Fatalf("Create before the schema = %v; want ErrDependencyUnavailable", err)
	}
	if _, err = repo.Get(ctx, uuid.NewString()); !errors.Is(err, biz.ErrDependencyUnavailable) {
		t.Fatalf("Get before the schema = %v; want ErrDependencyUnavailable", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Fatalf("two calls before the schema took %s; want at once", took)
	}
	if err = pg.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	for {
		_, err := repo.Create(ctx, ada)
		if err == nil {
			break
		}
		if !errors.Is(err, biz.ErrDependencyUnavailable) || time.Since(resumed) > 10*time.Second {
			t.Fatalf("Create %s after Resume = %v; want the store serving within 10s", time.Since(resumed), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
