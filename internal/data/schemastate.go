package data

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rampart-go/rampart/internal/biz"
)

// Retries of the start-up migration while the database is unreachable:
// exponential from migrateRetryInitial, doubling to migrateRetryMax, with
// equal jitter (each delay between half and all of its step) so the
// instances of a fleet cut off by one outage do not come back in lockstep.
const (
	migrateRetryInitial = time.Second
	migrateRetryMax     = 30 * time.Second
)

// SchemaState says whether a PostgreSQL schema has been migrated up since
// the process started. OpenPostgres makes it: ready at once on a normal
// start, pending while a database unreachable at start is retried in the
// background. Stores check it before every call, an atomic load, so
// until the schema is there they answer at once with Unavailable instead
// of "relation does not exist" or a wait.
type SchemaState struct {
	ready atomic.Bool
	mu    sync.Mutex // guards cause
	cause error      // why the schema is not migrated yet
}

// Ready reports whether the schema is migrated.
func (s *SchemaState) Ready() bool { return s.ready.Load() }

// Err is nil once the schema is migrated; until then it is a
// biz.DependencyError for the dependency "database" (errors.Is
// biz.ErrDependencyUnavailable) wrapping the last migration failure.
func (s *SchemaState) Err() error {
	if s.ready.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &biz.DependencyError{Dependency: databaseDependency, Err: fmt.Errorf("schema not migrated yet: %w", s.cause)}
}

func (s *SchemaState) setPending(cause error) {
	s.mu.Lock()
	s.cause = cause
	s.mu.Unlock()
}

// migrateInBackground retries s's migrations on pool until they apply,
// logging each failure at warn and the success at info, and marks st
// ready; first is the failure at start. The returned stop ends the
// retries (an attempt in flight is cancelled) and waits for them.
func migrateInBackground(pool *pgxpool.Pool, s Schema, st *SchemaState, first error, logger log.Logger) (stop func()) {
	h := log.NewHelper(logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		step, err := migrateRetryInitial, first
		for attempt := 1; ; attempt++ {
			wait := step/2 + rand.N(step-step/2+1)
			switch {
			case attempt == 1:
				h.Warnf("postgres: database unreachable at start, retrying in %s: %v", wait.Round(time.Millisecond), err)
			case errors.Is(DatabaseError(ctx, err), biz.ErrDependencyUnavailable):
				h.Warnf("postgres: database still unreachable (attempt %d), retrying in %s: %v", attempt, wait.Round(time.Millisecond), err)
			default:
				h.Warnf("postgres: migrating the schema failed (attempt %d), retrying in %s: %v", attempt, wait.Round(time.Millisecond), err)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			step = min(step*2, migrateRetryMax)
			if err = migratePool(ctx, pool, s); err == nil {
				st.ready.Store(true)
				h.Infof("postgres: database reachable, schema %s migrated on retry %d", s.Name, attempt)
				return
			}
			if ctx.Err() != nil {
				return
			}
			st.setPending(err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
