package chaos

import (
	"fmt"
	"path/filepath"
	"strings"
)

// PictureDir holds the pictures of the long runs, beside the report
// (docs/reliability/), so that links from the report are relative.
const PictureDir = "reliability"

// Scenario is one scenario's part of a report: what both the single-host
// and the multi-host suite write under their sections.
type Scenario struct {
	Title   string
	Passed  bool
	Table   string // Markdown, as Table renders rows
	Notes   []string
	Series  []Series // its calls over time; none: no picture
	Windows []Window // its faults, shaded in the picture
}

// WriteScenario appends s to b: a heading of the given level ("##",
// "###") with the title and the verdict, its table, its
// picture when it has series (drawn to PictureDir/picture + ".svg" beside
// the report at reportPath, and linked), and its notes. A picture that
// cannot be drawn is left out and its error returned, the rest written.
func WriteScenario(b *strings.Builder, heading, reportPath, picture string, s Scenario) error {
	verdict := "assertions met"
	if !s.Passed {
		verdict = "**assertion missed**"
	}
	fmt.Fprintf(b, "%s %s (%s)\n\n%s\n", heading, s.Title, verdict, s.Table)
	var err error
	if len(s.Series) > 0 {
		// Markdown links take slashes whatever the OS.
		link := PictureDir + "/" + picture + ".svg"
		err = PlotRun(filepath.Join(filepath.Dir(reportPath), filepath.FromSlash(link)), s.Title, s.Series, s.Windows)
		if err == nil {
			fmt.Fprintf(b, "![%s: calls and p99 per 100 ms over the run, per client](%s)\n\n", s.Title, link)
		}
	}
	for _, n := range s.Notes {
		fmt.Fprintf(b, "- %s\n", n)
	}
	b.WriteString("\n")
	return err
}
