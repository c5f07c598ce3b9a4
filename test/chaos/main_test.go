package chaos_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/leakcheck"
	"github.com/rampart-go/rampart/test/chaos"
)

var (
	long   = flag.Bool("chaos.long", false, "run every scenario at full length (200 calls/s for 20-30 s) and write its section of docs/reliability.md, with a picture of each run in docs/reliability/")
	report = flag.String("chaos.report", "", "with -chaos.long: where to write the report (default <repo>/docs/reliability.md); the pictures go in reliability/ beside it")
)

// bins are the service binaries, built once for the whole package.
var bins map[string]string

// mode holds the figures that differ between the short run (make test) and
// the long one (make chaos). The behaviour asserted is the same; how a
// latency is bounded differs, see limit.
type mode struct {
	rate    int           // calls per second of each client
	warmup  time.Duration // load before the fault
	after   time.Duration // load after the fault ends
	outage  time.Duration // scenario 6: how long the dependency is gone
	slow    time.Duration // scenario 7: how long the dependency is slow
	consul  time.Duration // scenario 4: how long the agent stays down
	overRun time.Duration // scenario 8: how long the overload lasts
	dbDown  time.Duration // scenario 9: how long PostgreSQL stays down
	// healthySlack, if not 0, lets the short run's latency bounds grow with
	// the healthy calls of the same run; see limit.
	healthySlack float64
}

func current() mode {
	if *long {
		return mode{
			rate: 200, warmup: 5 * time.Second, after: 10 * time.Second, outage: 10 * time.Second,
			slow: 15 * time.Second, consul: 10 * time.Second, overRun: 20 * time.Second, dbDown: 10 * time.Second,
		}
	}
	return mode{
		rate: 100, warmup: 1500 * time.Millisecond, after: 2 * time.Second, outage: 4 * time.Second,
		slow: 3 * time.Second, consul: 2 * time.Second, overRun: 6 * time.Second, dbDown: 3 * time.Second,
		healthySlack: 2,
	}
}

// limit is the most a latency measured under a fault may be: fixed, what
// the behaviour costs by design (a timeout, a backoff; 0 for a local
// answer), plus an allowance for the calls' own work. The long run allows
// quiet, a figure for a machine left to the suite, and reports it. make
// test runs on two CPUs whose timings swing ±40% from run to run, maybe
// beside another job, so there the allowance grows to healthySlack x the
// p99 of healthy (healthyAround: the same client's successful calls before
// the fault and after recovery) when that is more. why tells how the limit
// was reached, for the failure message.
func (m mode) limit(fixed, quiet time.Duration, healthy chaos.Calls) (limit time.Duration, why string) {
	return chaos.Limit(fixed, quiet, m.healthySlack, healthy)
}

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(stockChildEnv) != "" {
		os.Exit(runStockChild())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := devstack.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "rampart-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if _, err = devstack.EnsureConsulBinary(ctx, root); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if bins, err = devstack.BuildServices(ctx, root, dir, "user", "order"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := leakcheck.Run(m)
	if *long {
		path := *report
		if path == "" {
			path = filepath.Join(root, "docs", "reliability.md")
		}
		if err := writeReport(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		} else {
			fmt.Printf("report written to %s\n", path)
		}
	}
	return code
}

// section is one scenario's part of the report.
type section struct {
	order  int
	title  string
	passed bool
	table  string
	notes  []string
	// series and windows are the scenario's picture: each client's calls
	// and its faults.
	series  []chaos.Series
	windows []chaos.Window
}

var sections struct {
	sync.Mutex
	all []*section
}

// addSection records a scenario's table and notes for the report.
func addSection(s *section) {
	sections.Lock()
	defer sections.Unlock()
	sections.all = append(sections.all, s)
}

// securityLine says in which security.mode the scenarios ran: the one
// configs/user.yaml ships, which every scenario's stack follows.
func securityLine() string {
	root, err := devstack.RepoRoot()
	if err != nil {
		return "unknown: " + err.Error()
	}
	mode, err := devstack.SecurityMode(filepath.Join(root, "configs", "user.yaml"))
	if err != nil {
		return "unknown: " + err.Error()
	}
	if mode != devstack.SecurityMTLS {
		return mode + " (the shipped configs')"
	}
	return mode + " (the shipped configs'): every call between services and from the driver over mutual TLS with " +
		"certificates from Consul's CA, authorized by intentions; the agent with ACLs on (default deny), a token per service"
}

// reportSection is the section of the report the single-host suite owns:
// the multi-host suite writes its own into the same file, and neither run
// erases the other's. It holds the report's title, so it comes first.
const reportSection = "single-host"

func writeReport(path string) error {
	sections.Lock()
	defer sections.Unlock()
	sort.Slice(sections.all, func(i, j int) bool { return sections.all[i].order < sections.all[j].order })
	return renderReport(path, sections.all)
}

// renderReport writes secs into the single-host section of the report at
// path, each with a picture of its run in chaos.PictureDir beside the report,
// linked under its table. A picture that cannot be drawn fails the run,
// once the report is written without it.
func renderReport(path string, secs []*section) error {
	var b strings.Builder
	writeIntro(&b)
	var plotErrs []error
	for _, s := range secs {
		err := chaos.WriteScenario(&b, "##", path, s.slug(), chaos.Scenario{
			Title: s.title, Passed: s.passed, Table: s.table, Notes: s.notes, Series: s.series, Windows: s.windows,
		})
		if err != nil {
			plotErrs = append(plotErrs, err)
		}
	}
	content := strings.TrimRight(b.String(), "\n") + "\n"
	return errors.Join(chaos.WriteFirstSection(path, reportSection, content), errors.Join(plotErrs...))
}

// slug names a section's picture after its title's head, the order
// padded so that the files list in the report's order: "1. Instance
// crash: SIGKILL ..." is "01-instance-crash".
func (s *section) slug() string {
	head, _, _ := strings.Cut(s.title, ":")
	if _, rest, numbered := strings.Cut(head, ". "); numbered {
		head = rest
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%02d", s.order)
	dash := true
	for _, r := range strings.ToLower(head) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if dash {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
			continue
		}
		dash = true
	}
	return b.String()
}

// writeIntro writes the report's title and how to read it: the
// single-host section comes first in the report, so the title is its.
func writeIntro(b *strings.Builder) {
	goVersion := runtime.Version()
	if out, err := exec.Command("go", "version").Output(); err == nil { //nolint:noctx // a short local command
		goVersion = strings.TrimSpace(string(out))
	}
	b.WriteString("# Reliability: what the chaos suite measured\n\n")
	b.WriteString("Generated by `make chaos` (`go test ./test/chaos -run . -chaos.long -v`); do not edit by hand.\n")
	b.WriteString("A section after the scenarios, if any, comes from another suite and says how it was made.\n")
	b.WriteString("Every figure of the scenarios was measured in that run, against real processes on loopback: a real\n")
	b.WriteString("Consul agent (or cluster) of its own per scenario, fresh `user` and `order` binaries, real\n")
	b.WriteString("signals. The short version of each scenario runs in `make test` with the same behavioural\n")
	b.WriteString("assertions; as a shared CI machine's timings swing, its latency bounds allow the larger of\n")
	b.WriteString("this run's fixed figure and twice the p99 of the healthy calls of the same run.\n\n")
	fmt.Fprintf(b, "- machine: %d CPUs (`nproc`), %s/%s\n- %s\n- date: %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, goVersion, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(b, "- security mode: %s\n\n", securityLine())
	b.WriteString("How to read the tables: the load driver sends a steady rate of calls, each in its own\n")
	b.WriteString("goroutine, through plain gRPC clients with no retry of their own, so every failure counted\n")
	b.WriteString("is one the client under test did not mask. *attempts/req* for calls through `order` is\n")
	b.WriteString("1 + the rise of `rampart_client_retries_total` on order's /metrics divided by the requests;\n")
	b.WriteString("*user saw/req* (in the notes) is the rise of the `seen` counters of /debug/faults on the\n")
	b.WriteString("user instances: attempts that reached a server. Latencies are end to end at the driver.\n\n")
	b.WriteString("How to read the pictures: under each table, the run over time, from the driver's own record\n")
	b.WriteString("of every call, in buckets of 100 ms by start time: at the top each client's successful\n")
	b.WriteString("(solid) and failed (dashed) calls, below the p99 latency of its calls (log scale); the\n")
	b.WriteString("fault is shaded. Each client has one colour in both panels.\n\n")
}
