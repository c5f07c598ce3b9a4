package server

import (
	"context"
	"fmt"

	"github.com/go-kratos/kratos/v2/registry"
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"google.golang.org/grpc"

	"github.com/rampart-go/rampart/internal/data"
	"github.com/rampart-go/rampart/internal/middleware"
)

// Dialer is data.Dialer over Consul discovery and the client chains.
type Dialer struct {
	discovery registry.Discovery
	clients   *middleware.Clients
}

var _ data.Dialer = (*Dialer)(nil)

// NewDialer returns the dialer data's clients use. A nil discovery dials
// each target as it is written (tests with a fixed address).
func NewDialer(d registry.Discovery, clients *middleware.Clients) *Dialer {
	return &Dialer{discovery: d, clients: clients}
}

// Dial opens a lazy connection to clients.<name>, with its chain compiled
// now, once: calls find their method's policy ready. It does not wait for
// an instance: a peer that is down at start is a normal state, and calls
// fail with Unavailable until one appears. The balancer is the one Setup
// chose, so Setup must have run.
func (d *Dialer) Dial(name string) (*grpc.ClientConn, func(), error) {
	chain, err := d.clients.For(name)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", name, err)
	}
	opts := []kgrpc.ClientOption{
		kgrpc.WithEndpoint(chain.Target),
		// The chain's own timeouts replace Kratos' single one.
		kgrpc.WithTimeout(0),
		kgrpc.WithMiddleware(chain.Middleware...),
		kgrpc.WithUnaryInterceptor(chain.Interceptors...),
		kgrpc.WithOptions(chain.Dial...),
		kgrpc.WithNodeFilter(chain.NodeFilters...),
		kgrpc.WithPrintDiscoveryDebugLog(false),
	}
	if d.discovery != nil {
		opts = append(opts, kgrpc.WithDiscovery(d.discovery))
	}
	conn, err := kgrpc.DialInsecure(context.Background(), opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s at %s: %w", name, chain.Target, err)
	}
	return conn, func() { _ = conn.Close() }, nil
}
