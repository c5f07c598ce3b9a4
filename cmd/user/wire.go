//go:build wireinject

package main

import (
	"github.com/google/wire"

	userbiz "github.com/rampart-go/rampart/internal/biz/user"
	"github.com/rampart-go/rampart/internal/conf"
	userdata "github.com/rampart-go/rampart/internal/data/user"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/server"
	usersvc "github.com/rampart-go/rampart/internal/service/user"
)

// wireApp assembles the user service, one provider set per layer.
func wireApp(*conf.Bootstrap) (*server.App, func(), error) {
	panic(wire.Build(
		server.ProviderSet,
		middleware.ProviderSet,
		usersvc.ProviderSet,
		userbiz.ProviderSet,
		userdata.ProviderSet,
	))
}
