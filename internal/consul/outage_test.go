package consul

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// An agent that wants a client certificate (Consul's verify_incoming)
// and gets none is named as such on every failed request, whichever way
// the refusal reached the client: as the TLS alert, or, when the client
// was already writing its request, as a reset, a broken pipe or an HTTP/2
// connection that could not be established. On main before the probe,
// most of these requests failed with the second kind and were logged as
// a mere outage, without the setting to check (the e2e TestConsulHTTPS
// failed so on a clean-clone CI run).
func TestClientlessHandshakeRefusalIsNamed(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("a request without a client certificate was served")
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // each refusal logs a handshake error
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	const requests = 40
	kinds := map[string]int{}
	for range requests {
		cfg := api.DefaultConfig()
		cfg.Address, cfg.Scheme = strings.TrimPrefix(srv.URL, "https://"), "https"
		cfg.TLSConfig = api.TLSConfig{CAFile: caFile}
		c, err := api.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Agent().Self()
		if err == nil {
			t.Fatal("served without a client certificate")
		}
		kinds[failureKind(err)]++
		oe := operatorError(err, "hint")
		if oe == nil || !strings.Contains(oe.Error(), "check CONSUL_CLIENT_CERT") {
			t.Fatalf("not named as the agent refusing the handshake: %v", err)
		}
	}
	t.Logf("%d refused requests, all named; as the client saw them: %v", requests, kinds)
}

// failureKind names how a refused request failed at the client.
func failureKind(err error) string {
	switch {
	case isAlert(err):
		return "alert"
	case strings.Contains(err.Error(), "broken pipe"):
		return "broken pipe"
	case strings.Contains(err.Error(), "reset by peer"):
		return "reset"
	case strings.Contains(err.Error(), "could not be established"):
		return "http2 conn not established"
	}
	return err.Error()
}

// A request to a plain-HTTP agent that is down is an outage, not a
// refusal: the probe runs only for HTTPS.
func TestAgentDownIsNoRefusal(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(srv.URL, "https://")
	srv.Close()
	for _, scheme := range []string{"http", "https"} {
		cfg := api.DefaultConfig()
		cfg.Address, cfg.Scheme = addr, scheme
		c, err := api.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Agent().Self()
		if err == nil {
			t.Fatalf("%s: an agent that is down answered", scheme)
		}
		if oe := operatorError(err, "hint"); oe != nil {
			t.Errorf("%s: agent down explained as a refusal: %v", scheme, oe)
		}
	}
}

// outage logs the first failure, each change between an outage and a
// refusal, and a lasting refusal again every refusalLogEvery; an outage
// that lasts is logged once.
func TestOutageLogPolicy(t *testing.T) {
	down := errors.New("connection refused")
	refusal := api.StatusError{Code: http.StatusForbidden, Body: "Permission denied"}
	o := outage{hint: "the ACL token needs it"}
	step := func(err error, wantRefused, wantLog bool) {
		t.Helper()
		refused, logIt, explained := o.fail(err)
		if refused != wantRefused || logIt != wantLog {
			t.Fatalf("fail(%v) = refused %v, log %v; want %v, %v", err, refused, logIt, wantRefused, wantLog)
		}
		if refused && !strings.Contains(explained.Error(), o.hint) {
			t.Fatalf("refusal not explained by the hint: %v", explained)
		}
	}
	step(down, false, true)    // first
	step(down, false, false)   // the same outage
	step(refusal, true, true)  // now refused: what to fix
	step(refusal, true, false) // the same refusal, within refusalLogEvery
	o.loggedAt = o.loggedAt.Add(-refusalLogEvery)
	step(refusal, true, true) // lasting: said again
	step(down, false, true)   // back to an outage
	if !o.down() {
		t.Fatal("outage not open")
	}
	o.since = o.since.Add(-time.Second)
	if d := o.end(); d < time.Second {
		t.Fatalf("end = %s, want how long it lasted", d)
	}
	if o.down() || o.end() != 0 {
		t.Fatal("outage still open after end")
	}
	step(down, false, true) // a new outage is logged again
}
