package server

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/go-kratos/kratos/v2/registry"
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"google.golang.org/grpc"

	"github.com/rampart-go/rampart/internal/data"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/mtls"
)

// Dialer is data.Dialer over Consul discovery and the client chains.
type Dialer struct {
	discovery registry.Discovery
	clients   *middleware.Clients
	src       mtls.Source
}

var _ data.Dialer = (*Dialer)(nil)

// NewDialer returns the dialer data's clients use. A nil discovery dials
// each target as it is written (tests with a fixed address). With src
// (mtls mode) every connection is mutual TLS presenting src's certificate
// and accepting only a server whose certificate names the service called;
// a nil src dials plaintext.
func NewDialer(d registry.Discovery, clients *middleware.Clients, src mtls.Source) *Dialer {
	return &Dialer{discovery: d, clients: clients, src: src}
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
	grpcOpts := chain.Dial
	if w, ok := d.src.(waiter); ok {
		grpcOpts = append(slices.Clip(grpcOpts), grpc.WithContextDialer(dialWhenReady(w)))
	}
	opts := []kgrpc.ClientOption{
		kgrpc.WithEndpoint(chain.Target),
		// The chain's own timeouts replace Kratos' single one.
		kgrpc.WithTimeout(0),
		kgrpc.WithMiddleware(chain.Middleware...),
		kgrpc.WithUnaryInterceptor(chain.Interceptors...),
		kgrpc.WithOptions(grpcOpts...),
		kgrpc.WithNodeFilter(chain.NodeFilters...),
		kgrpc.WithPrintDiscoveryDebugLog(false),
	}
	if d.discovery != nil {
		opts = append(opts, kgrpc.WithDiscovery(d.discovery))
	}
	dial := kgrpc.DialInsecure
	if d.src != nil {
		// Discovery then hands out only the instances that advertise a TLS
		// endpoint (grpcs://), so a plaintext instance is never tried.
		opts = append(opts, kgrpc.WithTLSConfig(mtls.ClientConfig(d.src, targetService(chain.Target, name))))
		dial = kgrpc.Dial
	}
	conn, err := dial(context.Background(), opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s at %s: %w", name, chain.Target, err)
	}
	return conn, func() { _ = conn.Close() }, nil
}

// waiter is a certificate source that can say when it has its first
// certificate (consul.CertSource).
type waiter interface {
	Wait(ctx context.Context) error
}

// dialWhenReady opens a connection only once w has the instance's first
// certificate, waiting for it within the connection attempt's deadline.
// The balancer connects to the instances discovery finds as soon as the
// channel exists, which is at wiring, before App has waited for the
// certificate: a handshake then fails for want of the client's own
// certificate, and the subchannel sits in gRPC's connection backoff (1 s
// and growing) while the instance already serves, so its first calls to
// that peer fail Unavailable.
func dialWhenReady(w waiter) func(context.Context, string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if err := w.Wait(ctx); err != nil {
			return nil, err
		}
		return d.DialContext(ctx, "tcp", addr)
	}
}

// targetService is the service a client of target must find named in the
// server's certificate: <name> of discovery:///<name>, or, for a target
// dialled as written (a fixed address in tests), the client's own name.
func targetService(target, client string) string {
	if u, err := url.Parse(target); err == nil && u.Scheme == "discovery" {
		if svc := strings.Trim(u.Path, "/"); svc != "" {
			return svc
		}
	}
	return client
}
