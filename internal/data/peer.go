package data

import (
	"context"
	"fmt"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/rampart-go/rampart/internal/biz"
	"github.com/rampart-go/rampart/internal/rpc"
)

// Dialer opens the connection to another service by its name, the
// clients.<name> entry of the config. data declares what it needs; the
// composition root (internal/server) implements it with discovery and the
// client chain, so data depends on neither the config nor the middleware.
// The cleanup closes the connection.
type Dialer interface {
	Dial(service string) (*grpc.ClientConn, func(), error)
}

// PeerError turns an error from another service into what the calling
// service's biz expects: reasons maps the other service's error reasons to
// the caller's own domain errors (each service's client under
// internal/data/<svc> names its own), a known reason becomes its domain error, a reply over this client's size
// limit biz.ErrReplyTooLarge, a transport failure or shedding a
// biz.DependencyError, and the caller's own cancellation stays a context
// error (internal/rpc classifies). The gRPC error stays in the chain for logs.
func PeerError(peer string, err error, reasons map[string]error) error {
	if domain, ok := reasons[kerrors.Reason(err)]; ok {
		return fmt.Errorf("%s: %w", peer, domain)
	}
	o := rpc.Classify(context.Background(), err)
	switch {
	case o.Code == codes.Canceled:
		return fmt.Errorf("%s: %w", peer, context.Canceled)
	case o.Code == codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", peer, context.DeadlineExceeded)
	case o.Code == codes.ResourceExhausted && o.Origin == rpc.OriginLocal:
		return fmt.Errorf("%s: %w: %w", peer, biz.ErrReplyTooLarge, err)
	case o.Code == codes.Unavailable, o.Code == codes.ResourceExhausted:
		return &biz.DependencyError{Dependency: peer, Err: err}
	}
	return fmt.Errorf("%s: %w", peer, err)
}
