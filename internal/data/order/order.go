// Package order is the order service's data layer: its order stores
// (memory and SQLite, each with a bounded idempotency index) behind
// orderbiz.Repo, and its client of the user service behind orderbiz.Buyers.
// It imports the order service's biz package (aliased orderbiz) and the
// shared internal/data, never the user service's biz or data package: it
// reaches users only through the user API, mapping that API's reasons to
// the order service's own errors. Importers that meet another "order"
// package alias it orderdata.
package order

import (
	"context"

	"github.com/google/wire"

	orderbiz "github.com/rampart-go/rampart/internal/biz/order"
	"github.com/rampart-go/rampart/internal/conf"
)

// ProviderSet builds the order service's repositories: its own order store
// and a client of the user service.
var ProviderSet = wire.NewSet(NewRepo, NewUserConn, NewBuyers)

// NewRepo returns the order store data.driver names, its idempotency index
// bounded by data.idempotency; the cleanup closes it.
func NewRepo(c conf.Data) (orderbiz.Repo, func(), error) {
	opts := []Option{
		WithIdempotencyTTL(c.Idempotency.TTL),
		WithIdempotencyCapacity(c.Idempotency.Capacity),
	}
	if c.Driver == conf.DriverSQLite {
		return NewSQLStore(context.Background(), c.SQLite.Path, opts...)
	}
	return NewStore(opts...), func() {}, nil
}
