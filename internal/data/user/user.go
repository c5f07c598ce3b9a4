// Package user is the user service's data layer: its user stores (memory,
// SQLite and PostgreSQL, the SQL ones with versioned migrations) behind
// userbiz.Repo, and its client of the order service behind
// userbiz.OrderHistory. It imports the user service's biz package
// (aliased userbiz) and the shared internal/data, never the order
// service's biz or data package: it reaches orders only through the order
// API. Importers that meet another "user" package alias it userdata.
package user

import (
	"context"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/google/wire"

	userbiz "github.com/rampart-go/rampart/internal/biz/user"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/data"
)

// ProviderSet builds the user service's repositories: its own user store
// and a client of the order service.
var ProviderSet = wire.NewSet(NewRepo, NewOrderConn, NewOrderHistory)

// NewRepo returns the user store data.driver names, its schema migrated
// up (on PostgreSQL, in the background while the database is unreachable
// at start, logged to logger); the cleanup closes it.
func NewRepo(c conf.Data, logger log.Logger) (userbiz.Repo, func(), error) {
	switch c.Driver {
	case conf.DriverSQLite:
		return NewSQLStore(context.Background(), c.SQLite.Path)
	case conf.DriverPostgres:
		db, cleanup, err := data.OpenPostgres(context.Background(), c.Postgres, Schema, logger)
		if err != nil {
			return nil, nil, err
		}
		return NewPGStore(db), cleanup, nil
	}
	return NewStore(), func() {}, nil
}
