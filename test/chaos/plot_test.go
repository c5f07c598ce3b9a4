package chaos_test

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/rampart-go/rampart/test/chaos"
)

// syntheticRun is 10 s of two clients at 200 calls/s each; from 4 s to
// 6 s one of them fails every call, slowly.
func syntheticRun(start time.Time) (series []chaos.Series, windows []chaos.Window) {
	faultFrom, faultTo := start.Add(4*time.Second), start.Add(6*time.Second)
	var steady, hurt chaos.Calls
	for i := range 2000 {
		at := start.Add(time.Duration(i) * 5 * time.Millisecond)
		steady = append(steady, chaos.Call{Start: at, Latency: time.Duration(1+i%7) * time.Millisecond})
		c := chaos.Call{Start: at.Add(time.Millisecond), Latency: 2 * time.Millisecond}
		if !at.Before(faultFrom) && at.Before(faultTo) {
			c.Latency, c.Code = 2*time.Second, codes.Unavailable
		}
		hurt = append(hurt, c)
	}
	series = []chaos.Series{
		{Client: "Rampart client (server.Dialer), GetUser", Calls: steady},
		{Client: "baseline: seed-style client, GetUser", Calls: hurt},
	}
	return series, []chaos.Window{{From: faultFrom, To: faultTo, Label: "user instance SIGSTOPped"}}
}

func TestPlotRun(t *testing.T) {
	series, windows := syntheticRun(time.Now())
	path := filepath.Join(t.TempDir(), "pictures", "run.svg") // the directory is created
	title := "2. Instance hang: SIGSTOP one of two user instances for 5 s, then SIGCONT"
	if err := chaos.PlotRun(path, title, series, windows); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// One point per bucket, not per call: 4000 calls make a few tens of KB.
	if info.Size() > 200<<10 {
		t.Errorf("the SVG is %d KB, want at most 200", info.Size()>>10)
	}
	texts := svgTexts(t, path)
	joined := strings.Join(texts, " ")
	want := []string{title, windows[0].Label, "calls per 100 ms", "seconds since the first call"}
	for _, s := range series {
		want = append(want, s.Client)
	}
	for _, w := range want {
		// The title may be wrapped over several lines.
		if !slices.Contains(texts, w) && !strings.Contains(joined, w) {
			t.Errorf("no text %q in the SVG; its texts: %q", w, texts)
		}
	}
}

func TestPlotRunWithoutCalls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.svg")
	err := chaos.PlotRun(path, "empty", []chaos.Series{{Client: "nobody"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "no calls") {
		t.Errorf("PlotRun of no calls: %v, want an error that says so", err)
	}
	if _, statErr := os.Stat(path); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("PlotRun of no calls left a file: %v", statErr)
	}
}

// svgTexts parses the SVG at path as XML and returns the text of its
// <text> elements.
func svgTexts(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	dec := xml.NewDecoder(f)
	var texts []string
	sawSVG, inText := false, false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			sawSVG = sawSVG || tok.Name.Local == "svg"
			inText = tok.Name.Local == "text"
		case xml.EndElement:
			inText = false
		case xml.CharData:
			if inText {
				texts = append(texts, string(tok))
			}
		}
	}
	if !sawSVG {
		t.Fatalf("%s has no <svg> element", path)
	}
	return texts
}

func TestWriteSection(t *testing.T) {
	const (
		single = "<!-- single-host:begin -->\n"
		multi  = "<!-- multi-host:begin -->\n"
	)
	dir := t.TempDir()
	path := filepath.Join(dir, "docs", "reliability.md") // created with its directory
	steps := []struct {
		name, content string
		want          string
	}{
		{"single-host", "# Reliability\n\nfirst run", single + "# Reliability\n\nfirst run\n<!-- single-host:end -->\n"},
		// Absent: appended after a blank line.
		{"multi-host", "## Multi-host\n", single + "# Reliability\n\nfirst run\n<!-- single-host:end -->\n\n" +
			multi + "## Multi-host\n<!-- multi-host:end -->\n"},
		// Replaced in place, the other section untouched.
		{"single-host", "# Reliability\n\nsecond run\nlonger\n", single + "# Reliability\n\nsecond run\nlonger\n<!-- single-host:end -->\n\n" +
			multi + "## Multi-host\n<!-- multi-host:end -->\n"},
		{"multi-host", "", single + "# Reliability\n\nsecond run\nlonger\n<!-- single-host:end -->\n\n" +
			multi + "<!-- multi-host:end -->\n"},
	}
	for i, s := range steps {
		// Each step twice: a rerun with the same content changes nothing.
		for range 2 {
			if err := chaos.WriteSection(path, s.name, s.content); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			if got := readFile(t, path); got != s.want {
				t.Fatalf("step %d: the file reads\n%s\nwant\n%s", i, got, s.want)
			}
		}
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", info.Mode().Perm())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("%d files beside the report, want none: a temporary file stayed", len(entries)-1)
	}
}

func TestWriteFirstSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.md")
	// Created: as WriteSection would.
	if err := chaos.WriteFirstSection(path, "b", "b\n"); err != nil {
		t.Fatal(err)
	}
	// Absent: before what the file holds.
	if err := chaos.WriteFirstSection(path, "a", "# Title\n"); err != nil {
		t.Fatal(err)
	}
	want := "<!-- a:begin -->\n# Title\n<!-- a:end -->\n\n<!-- b:begin -->\nb\n<!-- b:end -->\n"
	if got := readFile(t, path); got != want {
		t.Fatalf("the file reads\n%s\nwant\n%s", got, want)
	}
	// Present: replaced where it is, first or not.
	for _, name := range []string{"a", "b"} {
		if err := chaos.WriteFirstSection(path, name, "new "+name); err != nil {
			t.Fatal(err)
		}
	}
	want = "<!-- a:begin -->\nnew a\n<!-- a:end -->\n\n<!-- b:begin -->\nnew b\n<!-- b:end -->\n"
	if got := readFile(t, path); got != want {
		t.Errorf("the file reads\n%s\nwant\n%s", got, want)
	}
}

func TestWriteSectionKeepsTheRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.md")
	before := "# Title by hand\n\n<!-- a:begin -->\nold a\n<!-- a:end -->\ntext between\n<!-- b:begin -->\nb\n<!-- b:end -->\nno newline at the end"
	if err := os.WriteFile(path, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := chaos.WriteSection(path, "a", "new a"); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(before, "old a", "new a", 1)
	if got := readFile(t, path); got != want {
		t.Errorf("the file reads\n%s\nwant\n%s", got, want)
	}
	if err := chaos.WriteSection(path, "c", "c\n"); err != nil {
		t.Fatal(err)
	}
	want += "\n\n<!-- c:begin -->\nc\n<!-- c:end -->\n"
	if got := readFile(t, path); got != want {
		t.Errorf("the file reads\n%s\nwant\n%s", got, want)
	}
}

func TestWriteSectionRefusesAGuess(t *testing.T) {
	for _, tc := range []struct {
		what, file, content string
	}{
		{"begin without end", "x\n<!-- s:begin -->\nold\n", "new"},
		{"end without begin", "x\n<!-- s:end -->\n", "new"},
		{"end before begin", "<!-- s:end -->\n<!-- s:begin -->\n", "new"},
		{"a marker in the content", "", "a\n<!-- s:end -->\nb"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "r.md")
			if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := chaos.WriteSection(path, "s", tc.content); err == nil {
				t.Error("no error")
			}
			if got := readFile(t, path); got != tc.file {
				t.Errorf("the file changed to\n%s", got)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// WriteScenario renders a scenario as both suites' reports show it: the
// heading with its verdict, the table, the picture drawn beside the report
// and linked, the notes; a picture that cannot be drawn is left out, its
// error returned, the rest still written.
func TestWriteScenario(t *testing.T) {
	report := filepath.Join(t.TempDir(), "reliability.md")
	series, windows := syntheticRun(time.Now())
	var b strings.Builder
	err := chaos.WriteScenario(&b, "###", report, "mh-x", chaos.Scenario{
		Title: "X. A fault", Passed: true, Table: "| t |\n", Notes: []string{"a note"}, Series: series, Windows: windows,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "### X. A fault (assertions met)\n\n| t |\n\n![X. A fault: calls and p99 per 100 ms over the run, per client](reliability/mh-x.svg)\n\n- a note\n\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	if _, serr := os.Stat(filepath.Join(filepath.Dir(report), "reliability", "mh-x.svg")); serr != nil {
		t.Errorf("picture not beside the report: %v", serr)
	}

	b.Reset()
	err = chaos.WriteScenario(&b, "##", report, "y", chaos.Scenario{
		Title: "Y", Table: "| t |\n", Notes: []string{"kept"}, Series: []chaos.Series{{Client: "none"}},
	})
	if err == nil {
		t.Error("a picture without calls drew")
	}
	if got := b.String(); got != "## Y (**assertion missed**)\n\n| t |\n\n- kept\n\n" {
		t.Errorf("got %q: want the verdict missed, no link, the notes kept", got)
	}
}
