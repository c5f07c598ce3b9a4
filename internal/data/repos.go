package data

import (
	"context"

	"github.com/rampart-go/rampart/internal/biz"
	"github.com/rampart-go/rampart/internal/conf"
)

// NewUserRepo returns the user store data.driver names; the cleanup closes it.
func NewUserRepo(c *conf.Bootstrap) (biz.UserRepo, func(), error) {
	if c.Data.Driver == conf.DriverSQLite {
		return NewSQLUserStore(context.Background(), c.Data.SQLite.Path)
	}
	return NewUserStore(), func() {}, nil
}

// NewOrderRepo returns the order store data.driver names, its idempotency
// index bounded by data.idempotency; the cleanup closes it.
func NewOrderRepo(c *conf.Bootstrap) (biz.OrderRepo, func(), error) {
	opts := []OrderStoreOption{
		WithIdempotencyTTL(c.Data.Idempotency.TTL),
		WithIdempotencyCapacity(c.Data.Idempotency.Capacity),
	}
	if c.Data.Driver == conf.DriverSQLite {
		return NewSQLOrderStore(context.Background(), c.Data.SQLite.Path, opts...)
	}
	return NewOrderStore(opts...), func() {}, nil
}
