package chaos_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/test/chaos"
)

// TestSectionReport renders a report of two scenarios, one with a picture,
// into a file that holds the multi-host suite's section, twice.
func TestSectionReport(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "reliability.md")
	multi := "<!-- multi-host:begin -->\n## Multi-host\n\nfrom the other suite\n<!-- multi-host:end -->\n"
	if err := os.WriteFile(path, []byte(multi), 0o644); err != nil {
		t.Fatal(err)
	}
	series, windows := syntheticRun(time.Now())
	secs := []*section{
		{
			order: 2, title: "2. Instance hang: SIGSTOP one of two user instances", passed: true, table: chaos.Table([]chaos.Row{{Client: series[0].Client, Calls: series[0].Calls}}),
			notes: []string{"a note"}, series: series, windows: windows,
		},
		{order: 8, title: "8. Overload: 4 x the measured capacity offered to order", table: "| t |\n"},
	}
	for range 2 {
		if err := renderReport(path, secs); err != nil {
			t.Fatal(err)
		}
	}
	got := readFile(t, path)
	single, rest, ok := strings.Cut(got, "<!-- single-host:end -->\n")
	single += "<!-- single-host:end -->"
	if !ok || !strings.HasPrefix(got, "<!-- single-host:begin -->\n") {
		t.Fatalf("no single-host section first (the multi-host one was written before it; the report's title leads):\n%s", got)
	}
	if rest != "\n"+multi {
		t.Errorf("after the single-host section:\n%q\nwant the multi-host section as it was:\n%q", rest, "\n"+multi)
	}
	for _, want := range []string{
		"# Reliability: what the chaos suite measured\n",
		"## 2. Instance hang: SIGSTOP one of two user instances (assertions met)\n\n| client |",
		"\n![2. Instance hang: SIGSTOP one of two user instances: calls and p99 per 100 ms over the run, per client](reliability/02-instance-hang.svg)\n\n- a note\n",
		"## 8. Overload: 4 x the measured capacity offered to order (**assertion missed**)\n\n| t |\n<!-- single-host:end -->",
	} {
		if !strings.Contains(single, want) {
			t.Errorf("no %q in the single-host section:\n%s", want, single)
		}
	}
	if strings.Count(single, "![") != 1 {
		t.Errorf("%d pictures linked, want 1 (the overload section has no calls)", strings.Count(single, "!["))
	}
	svgTexts(t, filepath.Join(dir, "reliability", "02-instance-hang.svg"))
}

func TestSectionSlug(t *testing.T) {
	for _, tc := range []struct {
		order int
		title string
		want  string
	}{
		{1, "1. Instance crash: SIGKILL one of two user instances", "01-instance-crash"},
		{10, "10. CA rotation under load: mtls with ACLs on, the CA's key replaced", "10-ca-rotation-under-load"},
		{9, "9. PostgreSQL restart: the database is stopped", "09-postgresql-restart"},
		{4, "Consul agent restart (no number, no colon)", "04-consul-agent-restart-no-number-no-colon"},
	} {
		if got := (&section{order: tc.order, title: tc.title}).slug(); got != tc.want {
			t.Errorf("slug of %q: %q, want %q", tc.title, got, tc.want)
		}
	}
}
