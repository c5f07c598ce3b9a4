//go:build wireinject

package main

import (
	"github.com/google/wire"

	"github.com/rampart-go/rampart/internal/biz"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/data"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/server"
	"github.com/rampart-go/rampart/internal/service"
)

// wireApp assembles the order service, one provider set per layer.
func wireApp(*conf.Bootstrap) (*server.App, func(), error) {
	panic(wire.Build(
		server.ProviderSet,
		middleware.ProviderSet,
		service.OrderProviderSet,
		biz.OrderProviderSet,
		data.OrderProviderSet,
	))
}
