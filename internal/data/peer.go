package data

import (
	"context"
	"fmt"
	"sync"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/registry"
	"github.com/go-kratos/kratos/v2/selector"
	"github.com/go-kratos/kratos/v2/selector/p2c"
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/rampart-go/rampart/internal/biz"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/rpc"
)

// useP2C switches Kratos' gRPC balancer from its default, weighted round
// robin, to P2C over EWMA latency and success: round robin keeps sending a
// share of calls to a slow or failing instance, P2C steers away from it
// within a few calls. Kratos reads the global selector when a connection
// builds its picker, so it is set before the first dial.
var useP2C sync.Once

// DialService opens a lazy connection to another service through Consul
// discovery, with the client chain of clients.<name>. It does not wait for
// an instance: a peer that is down at start is a normal state, and calls
// fail with Unavailable until one appears.
func DialService(name string, c *conf.Bootstrap, d registry.Discovery, clients *middleware.Clients) (*grpc.ClientConn, func(), error) {
	useP2C.Do(func() { selector.SetGlobalSelector(p2c.NewBuilder()) })
	chain, err := clients.For(name)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", name, err)
	}
	cl := c.Clients[name]
	conn, err := kgrpc.DialInsecure(context.Background(),
		kgrpc.WithEndpoint(cl.Target),
		kgrpc.WithDiscovery(d),
		// The chain's own timeouts replace Kratos' single one.
		kgrpc.WithTimeout(0),
		kgrpc.WithMiddleware(chain.Middleware...),
		kgrpc.WithUnaryInterceptor(chain.Interceptors...),
		kgrpc.WithOptions(chain.Dial...),
		kgrpc.WithNodeFilter(chain.NodeFilters...),
		kgrpc.WithPrintDiscoveryDebugLog(false),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s at %s: %w", name, cl.Target, err)
	}
	return conn, func() { _ = conn.Close() }, nil
}

// peerError turns an error from another service into what biz expects:
// a known reason becomes its domain error, a reply over this client's size
// limit biz.ErrReplyTooLarge, a transport failure or shedding a
// biz.DependencyError, and the caller's own cancellation stays a context
// error (internal/rpc classifies). The gRPC error stays in the chain for logs.
func peerError(peer string, err error, reasons map[string]error) error {
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
