// Package user is the user service's data layer: its user stores (memory
// and SQLite) behind userbiz.Repo, and its client of the order service
// behind userbiz.OrderHistory. It imports the user service's biz package
// (aliased userbiz) and the shared internal/data, never the order
// service's biz or data package: it reaches orders only through the order
// API. Importers that meet another "user" package alias it userdata.
package user

import (
	"context"

	"github.com/google/wire"

	userbiz "github.com/rampart-go/rampart/internal/biz/user"
	"github.com/rampart-go/rampart/internal/conf"
)

// ProviderSet builds the user service's repositories: its own user store
// and a client of the order service.
var ProviderSet = wire.NewSet(NewRepo, NewOrderConn, NewOrderHistory)

// NewRepo returns the user store data.driver names; the cleanup closes it.
func NewRepo(c conf.Data) (userbiz.Repo, func(), error) {
	if c.Driver == conf.DriverSQLite {
		return NewSQLStore(context.Background(), c.SQLite.Path)
	}
	return NewStore(), func() {}, nil
}
