// Package data implements the repositories biz declares: in-memory stores
// for what a service owns, and gRPC clients for what another service owns.
// Transport errors are translated back into biz errors here, so use cases
// never see a gRPC status.
package data

import "github.com/google/wire"

// UserProviderSet builds the user service's repositories: its own user
// store and a client of the order service.
var UserProviderSet = wire.NewSet(NewUserRepo, NewOrderConn, NewOrderHistory)

// OrderProviderSet builds the order service's repositories: its own order
// store and a client of the user service.
var OrderProviderSet = wire.NewSet(NewOrderRepo, NewUserConn, NewUserDirectory)
