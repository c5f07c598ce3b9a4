// Package devstacktest is the test side of devstack: helpers that start a
// Consul agent, a stack or a client for one test and stop it in
// tb.Cleanup, printing the logs' tails when the test failed. It is kept
// apart from the launcher so that `testing`, the client chain and data's
// dialing are linked only into test binaries, never into cmd/devstack.
//
// Every helper fails the test itself (tb.Fatal) when it cannot give what it
// promises, so callers read as a list of what the test needs.
package devstacktest

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rampart-go/rampart/cmd/devstack/demo"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/mtls"
	"github.com/rampart-go/rampart/internal/server"
)

// consulTimeout covers building bin/consul on a fresh machine (a few
// minutes) plus the agent's start-up.
const consulTimeout = 15 * time.Minute

// logTailLines is how much of each log a failed test prints.
const logTailLines = 40

// Consul starts a fresh Consul dev agent for one test, building bin/consul
// first if needed, and stops it in tb.Cleanup. Every test gets its own
// agent on its own ports, so tests run alone or in parallel. When the test
// failed, the tail of the agent log is written to the test log. Extra
// options (e.g. devstack.WithConsulHTTPPort) are applied after the defaults.
func Consul(tb testing.TB, opts ...devstack.ConsulOption) *devstack.ConsulAgent {
	tb.Helper()
	root, err := devstack.RepoRoot()
	if err != nil {
		tb.Fatalf("consul for test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), consulTimeout)
	defer cancel()
	bin, err := devstack.EnsureConsulBinary(ctx, root)
	if err != nil {
		tb.Fatalf("consul for test: %v", err)
	}
	// tb.TempDir is removed after our cleanup below has run (cleanups run
	// last-in first-out), so the log is still there to dump.
	all := append([]devstack.ConsulOption{devstack.WithConsulBinary(bin), devstack.WithConsulDir(tb.TempDir())}, opts...)
	agent, err := devstack.StartConsul(ctx, all...)
	if err != nil {
		tb.Fatalf("consul for test: %v", err) // the error carries the log tail
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("consul agent %s log tail (%s):\n%s", agent.NodeName(), agent.LogPath(), agent.LogTail(60))
		}
		if err := agent.Stop(); err != nil {
			tb.Errorf("stop consul agent: %v", err)
		}
	})
	return agent
}

// Port reserves a loopback port for the whole test (see
// devstack.ReservePort), for an address that must be known before the
// process that binds it starts, or one that must stay unanswered.
func Port(tb testing.TB) int {
	tb.Helper()
	port, release, err := devstack.ReservePort()
	if err != nil {
		tb.Fatalf("port for test: %v", err)
	}
	tb.Cleanup(release)
	return port
}

// Stack starts a stack in a directory of the test and stops it in
// tb.Cleanup; if the start fails or the test does, the tail of every log
// is written to the test log. cfg.WorkDir is ignored.
func Stack(tb testing.TB, ctx context.Context, cfg devstack.StackConfig) *devstack.Stack {
	tb.Helper()
	cfg.WorkDir = tb.TempDir()
	dump := func() {
		for _, p := range devstack.Logs(cfg.WorkDir) {
			tb.Logf("--- %s (last %d lines) ---\n%s", p, logTailLines, devstack.LogTail(p, logTailLines))
		}
	}
	s, err := devstack.StartStack(ctx, cfg)
	if err != nil {
		// StartStack has stopped what it started; its logs are still here.
		dump()
		tb.Fatalf("start stack: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			dump()
		}
		if err := s.Stop(); err != nil {
			tb.Errorf("stop stack: %v", err)
		}
	})
	return s
}

// ConsulClient is a client of the agent at addr, without a token, whose
// idle connections are closed when the test ends, so no transport
// goroutine outlives it.
func ConsulClient(tb testing.TB, addr string) *api.Client {
	tb.Helper()
	return TokenClient(tb, addr, "")
}

// Demo dials the demo clients (untraced) with opts and closes them when
// the test ends.
func Demo(tb testing.TB, ctx context.Context, consul *api.Client, opts ...demo.DialOption) *demo.Clients {
	tb.Helper()
	c, err := demo.Dial(ctx, consul, nil, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Dial dials clients.<name> of c (normally discovery:///<name>) through
// s's agent, with the client chain every service uses on its peers,
// untraced, and in mtls with a certificate of devstack.ClientIdentity
// (Certificates); the connection and its registry close when the test
// ends.
func Dial(tb testing.TB, s *devstack.Stack, c *conf.Bootstrap, name string) *grpc.ClientConn {
	tb.Helper()
	reg := consul.New(StackConsul(tb, s))
	tb.Cleanup(func() { _ = reg.Close() })
	server.Setup()
	dialer := server.NewDialer(reg, middleware.NewClients(c.Clients, log.NewStdLogger(io.Discard), nil), Certificates(tb, s))
	conn, closeConn, err := dialer.Dial(name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(closeConn)
	return conn
}

// StackConsul is ConsulClient of s's agent with the management token when
// s runs with ACLs (in mtls), so the test may read and write anything.
func StackConsul(tb testing.TB, s *devstack.Stack) *api.Client {
	tb.Helper()
	return TokenClient(tb, s.ConsulAddr, s.ManagementToken())
}

// TokenClient is ConsulClient with token ("" for none).
func TokenClient(tb testing.TB, addr, token string) *api.Client {
	tb.Helper()
	cfg := api.DefaultNonPooledConfig()
	cfg.Address, cfg.Token = addr, token
	c, err := api.NewClient(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cfg.Transport.CloseIdleConnections)
	return c
}

// Certificates is, for a stack in mtls, a source of the certificate of
// devstack.ClientIdentity (which the stack's intentions let call every
// service), closed when the test ends; nil for a plaintext stack, which
// the dialers take as "plaintext". A test asking again for the same stack
// gets the same source.
func Certificates(tb testing.TB, s *devstack.Stack) mtls.Source {
	tb.Helper()
	if !s.MTLS() {
		return nil
	}
	k := certKey{tb, s}
	certsMu.Lock()
	defer certsMu.Unlock()
	if src, ok := certs[k]; ok {
		return src
	}
	src := CertSource(tb, StackConsul(tb, s), devstack.ClientIdentity)
	certs[k] = src
	tb.Cleanup(func() {
		certsMu.Lock()
		delete(certs, k)
		certsMu.Unlock()
	})
	return src
}

type certKey struct {
	tb testing.TB
	s  *devstack.Stack
}

var (
	certsMu sync.Mutex
	certs   = map[certKey]*consul.CertSource{}
)

// CertSource follows the leaf certificate of identity and the CA roots
// from the agent of client (whose token needs service:write on identity),
// closed when the test ends.
func CertSource(tb testing.TB, client *api.Client, identity string) *consul.CertSource {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := consul.NewCertSource(ctx, client, identity, consul.WithLogger(log.NewStdLogger(io.Discard)))
	if err != nil {
		tb.Fatalf("certificate of %s: %v", identity, err)
	}
	tb.Cleanup(func() { _ = src.Close() })
	return src
}

// Credentials are the transport credentials of a client that dials an
// instance of service of s by address: mutual TLS with src (Certificates)
// checking that the server is service, or plaintext when src is nil.
func Credentials(src mtls.Source, service string) grpc.DialOption {
	if src == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(mtls.ClientConfig(src, service)))
}

// DialAddr is a plain connection (no client chain, no discovery) to the
// instance of service at addr, with Credentials; closed when the test
// ends.
func DialAddr(tb testing.TB, src mtls.Source, addr, service string) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(addr, Credentials(src, service))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// StackDemo is Demo through s's agent, with Certificates in mtls.
func StackDemo(tb testing.TB, ctx context.Context, s *devstack.Stack) *demo.Clients {
	tb.Helper()
	var opts []demo.DialOption
	if src := Certificates(tb, s); src != nil {
		opts = append(opts, demo.WithCertificates(src))
	}
	return Demo(tb, ctx, StackConsul(tb, s), opts...)
}

// Context returns a context that ends after d or when the test ends.
func Context(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}
