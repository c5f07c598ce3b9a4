// Package biz is where a Rampart service's business logic lives: domain
// types, use cases, the repository interfaces the data layer implements, and
// the domain errors. It imports nothing of gRPC, Consul or Kratos transport,
// so a use case can be read and tested without the network.
package biz

import "github.com/google/wire"

// UserProviderSet builds the use cases the user service serves.
var UserProviderSet = wire.NewSet(NewUserUsecase)

// OrderProviderSet builds the use cases the order service serves.
var OrderProviderSet = wire.NewSet(NewOrderUsecase)
