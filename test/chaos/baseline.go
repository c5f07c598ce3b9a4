package chaos

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/go-kratos/kratos/v2/middleware/circuitbreaker"
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"

	"github.com/rampart-go/rampart/internal/consul"
)

// SeedDialTimeout is the seed-style client's dial timeout.
const SeedDialTimeout = 2 * time.Second

// SeedClient is the pattern of the seed article: look the service up in the
// Consul catalog once at start, dial the first instance with a dial timeout
// and gRPC's connection backoff, and make every call on that one connection
// with no retry. It never hears of another instance.
type SeedClient struct {
	Conn *grpc.ClientConn
	Addr string // the instance it dialled
}

// DialSeed dials the first catalog entry of service with creds (the
// transport credentials: plaintext or mutual TLS).
func DialSeed(ctx context.Context, client *api.Client, service string, creds grpc.DialOption) (*SeedClient, error) {
	entries, _, err := client.Catalog().Service(service, "", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("seed client: catalog: %w", err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("seed client: no %s in the catalog", service)
	}
	addr := net.JoinHostPort(entries[0].ServiceAddress, strconv.Itoa(entries[0].ServicePort))
	conn, err := grpc.NewClient(addr,
		creds,
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: SeedDialTimeout}),
	)
	if err != nil {
		return nil, fmt.Errorf("seed client: %w", err)
	}
	// The dial timeout: wait for the connection as a blocking dial would.
	dctx, cancel := context.WithTimeout(ctx, SeedDialTimeout)
	defer cancel()
	conn.Connect()
	for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
		if !conn.WaitForStateChange(dctx, s) {
			_ = conn.Close()
			return nil, fmt.Errorf("seed client: dial %s: %w", addr, dctx.Err())
		}
	}
	return &SeedClient{Conn: conn, Addr: addr}, nil
}

// StockTimeout is Kratos' default client timeout, which the stock client keeps.
const StockTimeout = 2 * time.Second

// DialStock dials service the way a Kratos application does out of the box:
// the discovery:/// resolver over the registry, Kratos' circuitbreaker
// middleware, no retry, and the 2 s default timeout. The registry is
// Rampart's Consul adapter (Kratos' contrib one lags on changes; see
// design.md); the balancer is whatever selector is global in the process,
// which is Kratos' default, weighted round robin, unless something (as
// server.Setup does) replaced it. Run it in a process of its own to be
// sure of the stock selector. With tlsConf (mtls mode) it dials Kratos'
// secure way, which also makes its resolver take the grpcs:// endpoints;
// nil dials in plaintext.
func DialStock(ctx context.Context, client *api.Client, service string, tlsConf *tls.Config) (*grpc.ClientConn, func(), error) {
	reg := consul.New(client)
	opts := []kgrpc.ClientOption{
		kgrpc.WithEndpoint("discovery:///" + service),
		kgrpc.WithDiscovery(reg),
		kgrpc.WithMiddleware(circuitbreaker.Client()),
		kgrpc.WithPrintDiscoveryDebugLog(false),
	}
	dial := kgrpc.DialInsecure
	if tlsConf != nil {
		opts, dial = append(opts, kgrpc.WithTLSConfig(tlsConf)), kgrpc.Dial
	}
	conn, err := dial(ctx, opts...)
	if err != nil {
		_ = reg.Close()
		return nil, nil, fmt.Errorf("stock client: %w", err)
	}
	return conn, func() { _ = errors.Join(conn.Close(), reg.Close()) }, nil
}
