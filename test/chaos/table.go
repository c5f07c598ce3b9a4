package chaos

import (
	"fmt"
	"strings"
	"time"
)

// Row is one line of a scenario's table: one client's view of the run.
type Row struct {
	Client   string
	Calls    Calls
	Attempts string // attempts per request, or why it is not known
	Recover  string // time to recover, as the scenario defines it
}

// Table renders rows as a Markdown table: requests, failed, failed %,
// p50, p99, max, attempts per request and time to recover.
func Table(rows []Row) string {
	var b strings.Builder
	b.WriteString("| client | requests | failed | failed % | p50 | p99 | max | attempts/req | time to recover |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		n, failed := len(r.Calls), len(r.Calls.Failed())
		pct := 0.0
		if n > 0 {
			pct = 100 * float64(failed) / float64(n)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %.2f | %s | %s | %s | %s | %s |\n",
			r.Client, n, failed, pct,
			Dur(r.Calls.Quantile(0.5)), Dur(r.Calls.Quantile(0.99)), Dur(r.Calls.Max()),
			orDash(r.Attempts), orDash(r.Recover))
	}
	return b.String()
}

// Dur prints a latency with a precision that suits its size.
func Dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
