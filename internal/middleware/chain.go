// Package middleware assembles the Kratos middleware chains every Rampart
// service runs, in the order the design fixes, so no service builds its own.
// The policies themselves live one per sub-package.
package middleware

import (
	"github.com/go-kratos/kratos/v2/log"
	kmiddleware "github.com/go-kratos/kratos/v2/middleware"
	"github.com/go-kratos/kratos/v2/middleware/logging"
	"github.com/go-kratos/kratos/v2/middleware/recovery"
	"github.com/google/wire"

	"github.com/rampart-go/rampart/internal/middleware/validation"
)

// ProviderSet builds both chains.
var ProviderSet = wire.NewSet(NewServerChain, NewClientChain)

// ServerChain is the middleware every gRPC handler runs behind, outermost first.
type ServerChain []kmiddleware.Middleware

// ClientChain is the middleware every call to another service runs through,
// outermost first. Retry, breaker and timeouts are added here by the
// resilience work (issue #3); until then a call is one attempt.
type ClientChain []kmiddleware.Middleware

// NewServerChain returns recovery -> logging -> validation. Recovery is
// outermost so a panic anywhere below becomes Internal instead of a crash;
// validation is innermost so rejected requests are still logged.
func NewServerChain(logger log.Logger) ServerChain {
	return ServerChain{
		recovery.Recovery(),
		logging.Server(logger),
		validation.Server(),
	}
}

// NewClientChain returns the outgoing chain: each call is logged with its
// target, code and latency.
func NewClientChain(logger log.Logger) ClientChain {
	return ClientChain{
		logging.Client(logger),
	}
}
