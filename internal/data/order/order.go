// Package order is the order service's data layer: its order stores
// behind orderbiz.Repo, and its client of the user service behind
// orderbiz.Buyers.
//
// Idempotency: every store writes the key and the order it protects
// together (one lock in memory, one transaction in SQL), so a retry finds
// either both or neither. The memory store, one process's and meant for
// tests, bounds its index by a TTL and a capacity (past the capacity the
// oldest key is forgotten, even inside its TTL). The SQL stores, shared by
// every instance, have no capacity cap (data.idempotency.capacity does not
// apply): a key is held for its whole TTL, ignored once it has expired, and
// deleted by a bounded background sweep off the request path. Uncapped,
// the keys cost 201 bytes each on PostgreSQL (see PGStore). The SQL
// stores' schemas are versioned migrations (Schema).
//
// The package imports the order service's biz package (aliased orderbiz) and the
// shared internal/data, never the user service's biz or data package: it
// reaches users only through the user API, mapping that API's reasons to
// the order service's own errors. Importers that meet another "order"
// package alias it orderdata.
package order

import (
	"context"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/google/wire"

	orderbiz "github.com/rampart-go/rampart/internal/biz/order"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/data"
)

// ProviderSet builds the order service's repositories: its own order store
// and a client of the user service.
var ProviderSet = wire.NewSet(NewRepo, NewUserConn, NewBuyers)

// NewRepo returns the order store data.driver names, its idempotency index
// bounded by data.idempotency (on PostgreSQL its schema is migrated in the
// background while the database is unreachable at start, logged to
// logger); the cleanup closes it.
func NewRepo(c conf.Data, logger log.Logger) (orderbiz.Repo, func(), error) {
	opts := []Option{
		WithIdempotencyTTL(c.Idempotency.TTL),
		WithIdempotencyCapacity(c.Idempotency.Capacity),
	}
	switch c.Driver {
	case conf.DriverSQLite:
		return NewSQLStore(context.Background(), c.SQLite.Path, opts...)
	case conf.DriverPostgres:
		db, closePool, err := data.OpenPostgres(context.Background(), c.Postgres, Schema, logger)
		if err != nil {
			return nil, nil, err
		}
		s := NewPGStore(db, opts...)
		return s, func() { s.Close(); closePool() }, nil
	}
	return NewStore(opts...), func() {}, nil
}
