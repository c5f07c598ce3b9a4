package consul_test

import (
	"context"
	"crypto/x509"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/mtls"
	"github.com/rampart-go/rampart/internal/mtls/mtlstest"
)

// newCertSource starts a CertSource of service on client and closes it
// when the test ends.
func newCertSource(t *testing.T, client *api.Client, service string, opts ...consul.Option) (*consul.CertSource, *testLogger) {
	t.Helper()
	logger := &testLogger{t: t}
	all := append([]consul.Option{consul.WithLogger(logger), consul.WithRetryBackoff(50*time.Millisecond, time.Second)}, opts...)
	src, err := consul.NewCertSource(testContext(t, time.Minute), client, service, all...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return src, logger
}

func TestCertSourceServesTheServiceIdentity(t *testing.T) {
	agent := devstacktest.Consul(t)
	client := devstacktest.ConsulClient(t, agent.Addr())
	start := time.Now()
	src, _ := newCertSource(t, client, "user")
	t.Logf("TIMING first leaf+roots: %s", time.Since(start).Round(time.Millisecond))

	roots, _, err := client.Agent().ConnectCARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID != src.ID() || svid.ID.TrustDomain().Name() != roots.TrustDomain {
		t.Errorf("ID %s, want one in trust domain %s", svid.ID, roots.TrustDomain)
	}
	if got, ok := mtls.ServiceOf(svid.ID); !ok || got != "user" {
		t.Errorf("the leaf's ID %s names %q, want user", svid.ID, got)
	}
	if !strings.HasPrefix(svid.ID.Path(), "/ns/default/dc/") {
		t.Errorf("path %s, want Consul's /ns/default/dc/<dc>/svc/user", svid.ID.Path())
	}
	if ttl := time.Until(src.Expiry()); ttl < 71*time.Hour || ttl > 73*time.Hour {
		t.Errorf("leaf expires in %s, want the dev agent's 72h", ttl)
	}
	b, err := src.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b.X509Authorities()); n != len(roots.Roots) {
		t.Errorf("%d authorities, want the %d roots Consul lists", n, len(roots.Roots))
	}
	pool := x509.NewCertPool()
	for _, root := range b.X509Authorities() {
		pool.AddCert(root)
	}
	if _, err := svid.Certificates[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the leaf does not chain to the roots: %v", err)
	}
	if _, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("other.consul")); err == nil {
		t.Error("a bundle for another trust domain")
	}
	if r := src.Rotations(); r != (consul.Rotations{}) {
		t.Errorf("rotations %+v before any", r)
	}
	// Close stops the goroutines (TestMain's leak check) and keeps the pair.
	_ = src.Close()
	if _, err := src.GetX509SVID(); err != nil {
		t.Errorf("after Close: %v", err)
	}
}

func TestCertSourceFailsFastWithoutAnAgent(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(devstacktest.Port(t)) // nothing answers
	client := devstacktest.ConsulClient(t, addr)
	start := time.Now()
	src, err := consul.NewCertSource(testContext(t, time.Minute), client, "user",
		consul.WithLogger(&testLogger{t: t}), consul.WithStartTimeout(time.Second))
	took := time.Since(start)
	if err == nil {
		_ = src.Close()
		t.Fatal("NewCertSource without an agent succeeded")
	}
	t.Logf("error after %s: %v", took.Round(time.Millisecond), err)
	if took > 3*time.Second {
		t.Errorf("took %s, want about the 1s start timeout", took)
	}
	for _, want := range []string{"user", "no leaf certificate", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	// A context that ends first ends the wait too.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := consul.NewCertSource(ctx, client, "user", consul.WithLogger(&testLogger{t: t})); err == nil ||
		!strings.Contains(err.Error(), "deadline") {
		t.Errorf("with a short context: %v", err)
	}
}

// TestStartCertSourceWaitsForTheAgent: StartCertSource returns at once
// without an agent, is not ready and says why, and becomes ready by
// itself once an agent appears at the address.
func TestStartCertSourceWaitsForTheAgent(t *testing.T) {
	port := devstacktest.Port(t)
	client := devstacktest.ConsulClient(t, "127.0.0.1:"+strconv.Itoa(port))
	src, err := consul.StartCertSource(client, "user", consul.WithLogger(&testLogger{t: t}),
		consul.WithRetryBackoff(50*time.Millisecond, 500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	if _, err := src.GetX509SVID(); err == nil {
		t.Fatal("an SVID before any agent answered")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := src.Wait(ctx); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Wait without an agent = %v, want the last error", err)
	}
	if err := src.LastError(); err == nil {
		t.Error("LastError = nil while not ready")
	}
	select {
	case <-src.Ready():
		t.Fatal("ready without an agent")
	default:
	}

	devstacktest.Consul(t, devstack.WithConsulHTTPPort(port))
	appeared := time.Now()
	if err := src.Wait(testContext(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING ready %s after the agent was", time.Since(appeared).Round(time.Millisecond))
	if got, ok := mtls.ServiceOf(src.ID()); !ok || got != "user" || src.LastError() != nil {
		t.Errorf("ID %s (%q), LastError %v; want user's, nil", src.ID(), got, src.LastError())
	}
}

// waitFor polls cond every 10 ms until it holds or d passes, and returns
// how long it took.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// A CA rotation reaches both sources while calls go on, and no call fails:
// neither on a connection open across it nor on the new connections, each
// a fresh handshake, opened throughout.
func TestCARotationUnderLoad(t *testing.T) {
	agent := devstacktest.Consul(t)
	client := devstacktest.ConsulClient(t, agent.Addr())
	userSrc, _ := newCertSource(t, client, "user")
	orderSrc, _ := newCertSource(t, client, "order")
	oldUser := userSrc.ID()
	addr := mtlstest.Serve(t, mtls.ServerConfig(userSrc))
	clientTLS := mtls.ClientConfig(orderSrc, "user")

	ctx := testContext(t, 3*time.Minute)
	open, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = open.Close() })

	var (
		calls, failed, handshakes atomic.Int64
		serials                   sync.Map // server leaves (DER) the calls saw
		stop                      = make(chan struct{})
		wg                        sync.WaitGroup
	)
	check := func(conn *grpc.ClientConn) {
		var p peer.Peer
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
		calls.Add(1)
		if err != nil {
			failed.Add(1)
			t.Errorf("call failed: %v", err)
			return
		}
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			serials.Store(string(info.State.PeerCertificates[0].Raw), true)
		}
	}
	// Two workers call on the connection opened before the rotation, two
	// open a new connection, so make a new handshake, for every call.
	for i := range 4 {
		fresh := i%2 == 1
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !fresh {
					check(open)
					continue
				}
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
				if err != nil {
					t.Error(err)
					return
				}
				handshakes.Add(1)
				check(conn)
				_ = conn.Close()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	// Bounded: the rotation must be over within 90 s, or the test fails.
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	time.Sleep(500 * time.Millisecond)
	before := calls.Load()
	if err := devstack.RotateCA(ctx, client); err != nil {
		t.Fatal(err)
	}
	rootsIn := waitFor(t, 10*time.Second, "new roots in both sources", func() bool {
		return userSrc.Rotations().Roots >= 1 && orderSrc.Rotations().Roots >= 1
	})
	leavesIn := waitFor(t, 90*time.Second, "new leaves in both sources", func() bool {
		return userSrc.Rotations().Leaf >= 1 && orderSrc.Rotations().Leaf >= 1
	})
	leavesIn += rootsIn
	newLeaf, _ := userSrc.GetX509SVID()
	waitFor(t, 10*time.Second, "a new connection handshaking with the new leaf", func() bool {
		_, ok := serials.Load(string(newLeaf.Certificates[0].Raw))
		return ok
	})
	time.Sleep(time.Second) // and calls go on after it
	close(stop)
	wg.Wait()

	t.Logf("MEASURE rotation under load: %d calls (%d during the rotation), %d new connections, %d failed; roots in both sources %s after the CA change, leaves %s",
		calls.Load(), calls.Load()-before, handshakes.Load(), failed.Load(),
		rootsIn.Round(time.Millisecond), leavesIn.Round(time.Millisecond))
	if failed.Load() != 0 {
		t.Errorf("%d of %d calls failed across the rotation", failed.Load(), calls.Load())
	}
	if userSrc.ID() != oldUser {
		t.Errorf("identity changed from %s to %s", oldUser, userSrc.ID())
	}
	b, _ := userSrc.GetX509BundleForTrustDomain(oldUser.TrustDomain())
	if n := len(b.X509Authorities()); n != 2 {
		t.Errorf("%d roots after the rotation, want the new and the old one", n)
	}
	if len(newLeaf.Certificates) < 2 {
		t.Errorf("the new leaf came without the cross-signed intermediate (%d certificates)", len(newLeaf.Certificates))
	}
}

// An agent restart is an outage and then, for a dev agent, a new cluster:
// a new CA with a new trust domain. The source keeps its pair through the
// outage, logs it once per query, and then follows the new CA.
func TestCertSourceAcrossAgentRestart(t *testing.T) {
	agent := devstacktest.Consul(t)
	client := devstacktest.ConsulClient(t, agent.Addr())
	src, logs := newCertSource(t, client, "user")
	before := src.ID()

	agent.Kill()
	time.Sleep(1500 * time.Millisecond) // several retries
	if svid, err := src.GetX509SVID(); err != nil || svid.ID != before {
		t.Fatalf("during the outage: %v, %v; want the current leaf", svid, err)
	}
	if n := logs.count("retrying"); n != 2 {
		t.Errorf("the outage was logged %d times, want once per query (2)", n)
	}
	if err := agent.Restart(testContext(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 30*time.Second, "the new CA's leaf and roots", func() bool {
		r := src.Rotations()
		return r.Leaf >= 1 && r.Roots >= 1
	})
	t.Logf("TIMING new CA followed %s after the agent was ready", took.Round(time.Millisecond))
	after := src.ID()
	if after.TrustDomain() == before.TrustDomain() {
		t.Errorf("trust domain still %s after a dev agent restart", after.TrustDomain())
	}
	if _, err := src.GetX509BundleForTrustDomain(after.TrustDomain()); err != nil {
		t.Errorf("no bundle for the new trust domain: %v", err)
	}
	if n := logs.count("Consul answers again"); n != 2 {
		t.Errorf("the recovery was logged %d times, want 2", n)
	}
}
