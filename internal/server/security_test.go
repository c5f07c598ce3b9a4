package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/mtls/mtlstest"
	"github.com/rampart-go/rampart/internal/server"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// The leaf-expiry gauge reads the NotAfter of the certificate the identity
// presents now: a renewed leaf shows at the next scrape, under the name and
// labels an alert rule uses, with the rotation counts beside it; after the
// cleanup none of them is exported.
func TestCertificateMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tel, err := telemetry.New(ctx, telemetry.Config{TracesExporter: "none"},
		telemetry.ResourceInfo{ServiceName: "user", InstanceID: "user-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })

	ca := mtlstest.NewCA(t, "rampart.test")
	src := ca.Source(t, "user")
	first := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	src.SetSVID(ca.SVIDUntil(t, ca.ServiceID("user"), first))
	id := server.NewFixedIdentity("user", src, ca.ServiceID("user"), nil)
	stop, err := id.Instrument(tel.MeterProvider())
	if err != nil {
		t.Fatal(err)
	}

	page := scrapeText(t, ctx, tel)
	for _, want := range []string{
		expiryLine(first),
		`(?m)^rampart_mtls_rotations_total\{kind="leaf",.*service="user"\} 0$`,
		`(?m)^rampart_mtls_rotations_total\{kind="roots",.*service="user"\} 0$`,
	} {
		if !regexp.MustCompile(want).MatchString(page) {
			t.Errorf("/metrics has no line matching %s:\n%s", want, grep(page, "rampart_mtls_"))
		}
	}

	renewed := first.Add(36 * time.Hour)
	src.SetSVID(ca.SVIDUntil(t, ca.ServiceID("user"), renewed))
	if page = scrapeText(t, ctx, tel); !regexp.MustCompile(expiryLine(renewed)).MatchString(page) {
		t.Errorf("after a renewal, no line matching %s:\n%s", expiryLine(renewed), grep(page, "rampart_mtls_"))
	}

	stop()
	if page = scrapeText(t, ctx, tel); regexp.MustCompile(`(?m)^rampart_mtls_`).MatchString(page) {
		t.Errorf("certificate metrics still exported after the cleanup:\n%s", grep(page, "rampart_mtls_"))
	}
}

// expiryLine matches the gauge's line for a leaf expiring at notAfter.
func expiryLine(notAfter time.Time) string {
	// The exporter prints large values in exponent form.
	return fmt.Sprintf(`(?m)^rampart_mtls_leaf_expiry_timestamp_seconds\{.*service="user"\} (%d|%s)$`,
		notAfter.Unix(), regexp.QuoteMeta(fmt.Sprintf("%g", float64(notAfter.Unix()))))
}

// scrapeText is tel's /metrics page.
func scrapeText(t *testing.T, ctx context.Context, tel *telemetry.Telemetry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

// grep is the lines of page that hold s.
func grep(page, s string) string {
	return strings.Join(regexp.MustCompile(`(?m)^.*`+regexp.QuoteMeta(s)+`.*$`).FindAllString(page, -1), "\n")
}
