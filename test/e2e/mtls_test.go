package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/cmd/devstack/demo"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/mtls"
	"github.com/rampart-go/rampart/internal/mtls/mtlstest"
	"github.com/rampart-go/rampart/internal/rpc"
)

// maxIntentionFlip bounds how long a changed intention takes to reach
// calls: security.authz_cache_ttl (1 s in the shipped configs) plus the
// agent's own delay, a few milliseconds (internal/consul's
// TestIntentionChange), plus slack for a loaded machine.
const maxIntentionFlip = 3 * time.Second

// nobody is a user ID in canonical form that no user has: GetUser answers
// NotFound for it once a caller gets through.
const nobody = "00000000-0000-4000-8000-000000000000"

// TestMTLS runs one stack in mtls mode, an agent with ACLs on and default
// deny, one instance of each service with its own least-privilege token
// and the intentions of its config's clients, and calls it from outside
// as every kind of caller: the demo's own identity (allowed everywhere),
// none, a forged one, and an identity no intention allows until one does.
func TestMTLS(t *testing.T) {
	ctx := devstacktest.Context(t, 3*time.Minute)
	s := startStackWith(t, ctx, 1, 1, stackExtras{security: devstack.SecurityMTLS})
	user := s.Instances("user")[0]

	t.Run("Registrations", func(t *testing.T) {
		for _, name := range []string{"user", "order"} {
			checkRegistrations(t, ctx, s.Client, name, s.Instances(name), true)
		}
	})

	clients := dialDemo(t, ctx, s)

	t.Run("Demo", func(t *testing.T) {
		var out bytes.Buffer
		res, err := demo.Run(ctx, clients, &out)
		t.Logf("demo output:\n%s", out.String())
		if err != nil {
			t.Fatalf("demo over mTLS: %v", err)
		}
		if n := len(res.Profile.GetOrders()); n != 1 {
			t.Errorf("profile lists %d orders, want 1", n)
		}
		// Each service saw the other's identity on its calls.
		waitLog(t, ctx, user.LogPath, "operation=/user.v1.UserService/GetUser caller=order code=OK")
		waitLog(t, ctx, s.Instances("order")[0].LogPath, "operation=/order.v1.OrderService/ListOrders caller=user code=OK")
	})

	t.Run("InvalidArgument", func(t *testing.T) { checkInvalidArgument(t, ctx, clients) })

	t.Run("Gateway", func(t *testing.T) {
		body := `{"name":"Grace Hopper","email":"grace@example.com"}`
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+user.GatewayAddr+"/v1/users", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		reply, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(reply), "Grace Hopper") {
			t.Fatalf("POST /v1/users at the gateway: %d %s", resp.StatusCode, reply)
		}
		// The gateway's hop to its own gRPC port carries the instance's identity.
		waitLog(t, ctx, user.LogPath, "operation=/user.v1.UserService/CreateUser caller=user code=OK")
	})

	// What the server sees: no certificate, one of another CA, or a
	// plaintext connection, each refused before any call. A gRPC client
	// sees Unavailable, with the server's TLS alert or, when its preface
	// raced the alert, a broken pipe; a bare TLS client that only reads
	// gets the alert itself.
	td := spiffeid.RequireTrustDomainFromString(trustDomain(t, ctx, s.Client))
	forged := mtlstest.NewCA(t, td.Name()).SVID(t, "order") // same trust domain and service, another key
	for _, tt := range []struct {
		name  string
		tls   *tls.Config // nil: plaintext
		alert string
	}{
		{"NoCertificate", &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}, "certificate required"}, //nolint:gosec // the server is not what this checks
		{"OtherCA", &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{ //nolint:gosec // as above
			Certificate: [][]byte{forged.Certificates[0].Raw}, PrivateKey: forged.PrivateKey,
		}}}, "bad certificate"},
		{"Plaintext", nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			creds := insecure.NewCredentials()
			if tt.tls != nil {
				creds = credentials.NewTLS(tt.tls)
			}
			_, err := userAt(t, user.GRPCAddr, creds).GetUser(ctx, &userv1.GetUserRequest{Id: nobody})
			t.Logf("refused: %v", err)
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("GetUser = %v, want Unavailable from a refused connection", err)
			}
			if tt.tls == nil {
				return
			}
			if err := tlsAlert(ctx, user.GRPCAddr, tt.tls); err == nil || !strings.Contains(err.Error(), tt.alert) {
				t.Errorf("bare TLS client read %v, want the alert %q", err, tt.alert)
			}
		})
	}

	t.Run("DeniedThenAllowed", func(t *testing.T) {
		intruder := userAt(t, user.GRPCAddr, credentials.NewTLS(mtls.ClientConfig(devstacktest.CertSource(t, s.Client, "intruder"), "user")))
		_, err := intruder.GetUser(ctx, &userv1.GetUserRequest{Id: nobody})
		if status.Code(err) != codes.PermissionDenied || rpc.Reason(status.Convert(err)) != rpc.ReasonPermissionDenied ||
			!strings.Contains(status.Convert(err).Message(), "intruder may not call user") {
			t.Fatalf("GetUser as intruder = %v, want PermissionDenied (PERMISSION_DENIED) naming intruder", err)
		}
		t.Logf("denied: %v", err)
		waitLog(t, ctx, user.LogPath, "caller=intruder code=PermissionDenied reason=PERMISSION_DENIED")
		waitLog(t, ctx, user.LogPath, "msg=call denied caller=intruder")

		// The denial is cached for authz_cache_ttl; the allow reaches calls
		// within that plus the agent's own delay.
		flipped := time.Now()
		if err = devstack.AllowIntention(ctx, s.Client, "intruder", "user"); err != nil {
			t.Fatal(err)
		}
		for {
			_, err = intruder.GetUser(ctx, &userv1.GetUserRequest{Id: nobody})
			if status.Code(err) != codes.PermissionDenied {
				break
			}
			if time.Since(flipped) > 2*maxIntentionFlip {
				t.Fatalf("still denied %s after the intention allowed it", time.Since(flipped))
			}
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(flipped)
		t.Logf("TIMING intention deny -> allow reached calls in %s (authz_cache_ttl 1s; bound %s)", took.Round(time.Millisecond), maxIntentionFlip)
		if status.Code(err) != codes.NotFound {
			t.Fatalf("allowed GetUser = %v, want NotFound for a user nobody created", err)
		}
		if took > maxIntentionFlip {
			t.Errorf("the allow took %s, want <= %s", took, maxIntentionFlip)
		}
	})

	t.Run("ShellCertificate", func(t *testing.T) {
		files, err := devstack.WriteCert(ctx, s.Client, "shell", t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		caPEM, err := os.ReadFile(files.CA)
		if err != nil || !roots.AppendCertsFromPEM(caPEM) {
			t.Fatalf("ca.pem: %v", err)
		}
		// What grpcurl -cacert does: verify the server against a host name.
		// Consul's certificates carry a SPIFFE ID only, so it cannot work.
		verifying := credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
		_, err = userAt(t, user.GRPCAddr, verifying).GetUser(ctx, &userv1.GetUserRequest{Id: nobody})
		if !strings.Contains(status.Convert(err).Message(), "doesn't contain any IP SANs") {
			t.Errorf("with a host name check: %v, want the IP SAN failure grpcurl -cacert meets", err)
		}
		// What grpcurl -insecure -cert -key does, once make cert's ALLOW wrote the intention.
		if err = devstack.AllowIntention(ctx, s.Client, "shell", "user"); err != nil {
			t.Fatal(err)
		}
		shell := userAt(t, user.GRPCAddr, credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})) //nolint:gosec // the honest grpcurl line
		deadline := time.Now().Add(maxIntentionFlip)
		for {
			_, err = shell.GetUser(ctx, &userv1.GetUserRequest{Id: nobody})
			if status.Code(err) != codes.PermissionDenied || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if status.Code(err) != codes.NotFound {
			t.Fatalf("GetUser with make cert's files = %v, want NotFound", err)
		}
	})
}

// TestMTLSConsulDownAtStart starts user in mtls mode while no agent runs at
// its address: it must stay up without its certificate, not ready and not
// registered, and say so; one stopped then exits cleanly, and one left
// running serves and registers by itself once an agent appears.
func TestMTLSConsulDownAtStart(t *testing.T) {
	ctx := devstacktest.Context(t, 2*time.Minute)
	isolateConsul(t)
	bin := buildUser(t, ctx)
	port := devstacktest.Port(t)
	logDir := t.TempDir()
	start := func() *devstack.ServiceProc {
		return startInstance(t, ctx, devstack.ServiceSpec{
			Name: "user", Binary: bin, ConsulAddr: "127.0.0.1:" + strconv.Itoa(port), LogDir: logDir,
			Env: []string{"RAMPART_SECURITY_MODE=mtls", "RAMPART_SQLITE_PATH=" + filepath.Join(logDir, "user.db")},
		}, "in mtls mode without Consul")
	}

	stopped, waiting := start(), start()
	for _, p := range []*devstack.ServiceProc{stopped, waiting} {
		line, err := waitLogLine(ctx, p.LogPath, "waiting for the certificate of user", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s", filepath.Base(p.LogPath), line)
		if code := httpStatus(t, ctx, "http://"+p.HTTPAddr+"/readyz"); code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz without a certificate = %d, want 503", code)
		}
	}

	took := sigtermExitsZero(t, stopped, "while waiting for the certificate")
	t.Logf("TIMING SIGTERM -> exit 0 while waiting for the certificate: %s", took.Round(time.Millisecond))

	agent := devstacktest.Consul(t, devstack.WithConsulHTTPPort(port))
	appeared := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := devstack.WaitPassing(wctx, consulClient(t, agent.Addr()), "user", 1); err != nil {
		t.Fatalf("after the agent appeared: %v", err)
	}
	t.Logf("TIMING passing in Consul %s after the agent was ready", time.Since(appeared).Round(time.Millisecond))
	if code := httpStatus(t, ctx, "http://"+waiting.HTTPAddr+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with the certificate = %d, want 200", code)
	}
	sigtermExitsZero(t, waiting, "once registered")
}

// tlsAlert completes a TLS handshake with addr as cfg says, writes nothing
// and reads: what the server thinks of the client's certificate arrives as
// the read's error (TLS 1.3 verifies the client after the client's side of
// the handshake is done).
func tlsAlert(ctx context.Context, addr string, cfg *tls.Config) error {
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	return err
}

// trustDomain is the trust domain of the agent's CA.
func trustDomain(t *testing.T, ctx context.Context, client *api.Client) string {
	t.Helper()
	roots, _, err := client.Agent().ConnectCARoots((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	return roots.TrustDomain
}

// userAt is a UserService client of one address with creds and no client
// chain, closed when the test ends.
func userAt(t *testing.T, addr string, creds credentials.TransportCredentials) userv1.UserServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return userv1.NewUserServiceClient(conn)
}

// waitLog waits a few seconds for a line of the log at path holding needle.
func waitLog(t *testing.T, ctx context.Context, path, needle string) {
	t.Helper()
	if _, err := waitLogLine(ctx, path, needle, 5*time.Second); err != nil {
		t.Error(err)
	}
}
