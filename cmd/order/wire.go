//go:build wireinject

package main

import (
	"github.com/google/wire"

	orderbiz "github.com/rampart-go/rampart/internal/biz/order"
	"github.com/rampart-go/rampart/internal/conf"
	orderdata "github.com/rampart-go/rampart/internal/data/order"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/server"
	ordersvc "github.com/rampart-go/rampart/internal/service/order"
)

// wireApp assembles the order service, one provider set per layer.
func wireApp(*conf.Bootstrap) (*server.App, func(), error) {
	panic(wire.Build(
		server.ProviderSet,
		middleware.ProviderSet,
		ordersvc.ProviderSet,
		orderbiz.ProviderSet,
		orderdata.ProviderSet,
	))
}
