// Command report reads the output of the chain benchmark (test/bench),
// from a file or stdin, and prints per case the medians of ns/op, B/op,
// allocs/op and goroutines/op over all runs, then the ratios issue 16 sets
// targets for, (c) against (b) in latency and allocations and (c') against
// (a) in latency, beside the other ratios of the cases; and, when the output
// has it, the HTTP/JSON path (d) against the gRPC one (c). When the output has the throughput benchmark (a, b and
// c with bench.InFlight calls in flight), it prints its calls/s and the same
// ratios at saturation beside the ones with one call in flight.
//
// Ratios come from medians of the same output, never from figures of
// another run or machine: absolute times on small shared machines swing by
// tens of percent, ratios within one run much less. The per-round spread of
// (c)/(a) is printed beside its median so a noisy run shows as one.
//
//	go run ./test/bench/report bin/bench.txt
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/rampart-go/rampart/test/bench"
)

// Targets from issue 16: Rampart's chain costs no more than Kratos' stock
// chain per call, in time and in allocations, and, when the call is not
// sampled, at most 1.5 times bare grpc-go's time.
const (
	targetVsKratos        = 1.00 // (c)/(b) latency
	targetExtraVsKratos   = 0    // (c)-(b) allocations
	targetUnsampledVsGRPC = 1.50 // (c')/(a) latency
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	in := stdin
	switch len(args) {
	case 0:
	case 1:
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		in = f
	default:
		return errors.New("usage: report [benchmark-output-file]")
	}
	samples, other, err := parse(in)
	if err != nil {
		return err
	}
	if err := render(stdout, samples); err != nil {
		return err
	}
	if err := renderThroughput(stdout, samples, other); err != nil {
		return err
	}
	return renderOther(stdout, other)
}

// sample is one benchmark result line. goroutines (goroutines/op) and
// calls (calls/s) are optional; -1 when the line has none.
type sample struct {
	ns, bytes, allocs, goroutines, calls float64
}

// parse collects the results of BenchmarkUnary's cases, in the order they
// appear, so the i-th sample of every case comes from the same round, and
// apart from them the results of every other benchmark, by full name
// (BenchmarkValidation/GetUser). Other lines (headers, PASS) are skipped.
func parse(r io.Reader) (unary, other map[string][]sample, err error) {
	unary, other = make(map[string][]sample), make(map[string][]sample)
	prefix := bench.Benchmark + "/"
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		out, name := other, caseName(fields[0])
		if strings.HasPrefix(fields[0], prefix) {
			out, name = unary, caseName(strings.TrimPrefix(fields[0], prefix))
		}
		s := sample{goroutines: -1, calls: -1}
		var seen int
		// After the name and the iteration count: value, unit, value, unit...
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %q is not a number", fields[0], fields[i])
			}
			switch fields[i+1] {
			case "ns/op":
				s.ns, seen = v, seen|1
			case "B/op":
				s.bytes, seen = v, seen|2
			case "allocs/op":
				s.allocs, seen = v, seen|4
			case "goroutines/op":
				s.goroutines = v
			case "calls/s":
				s.calls = v
			}
		}
		if seen != 7 {
			return nil, nil, fmt.Errorf("%s: needs ns/op, B/op and allocs/op (run with -benchmem)", fields[0])
		}
		out[name] = append(out[name], s)
	}
	return unary, other, sc.Err()
}

// caseName drops the -GOMAXPROCS suffix go test adds ("a_grpc-2").
func caseName(s string) string {
	if i := strings.LastIndexByte(s, '-'); i > 0 {
		if _, err := strconv.Atoi(s[i+1:]); err == nil {
			return s[:i]
		}
	}
	return s
}

var labels = map[string]string{
	bench.CaseGRPC:             "(a) bare grpc-go",
	bench.CaseKratos:           "(b) Kratos stock chain",
	bench.CaseRampart:          "(c) Rampart chain, sampled",
	bench.CaseRampartUnsampled: "(c') Rampart chain, not sampled",
	bench.CaseHTTP:             "(d) HTTP/JSON via the gateway",
	bench.CaseMTLS:             "(e) Rampart chain over mTLS",
}

var order = []string{bench.CaseGRPC, bench.CaseKratos, bench.CaseRampart, bench.CaseRampartUnsampled, bench.CaseHTTP, bench.CaseMTLS}

// summary is the medians of one case.
type summary struct {
	runs                                 int
	ns, bytes, allocs, goroutines, calls float64
	nsMin, nsMax, callsMin, callsMax     float64
	perRound                             []sample
	present                              bool
}

func summarize(ss []sample) summary {
	if len(ss) == 0 {
		return summary{}
	}
	col := func(f func(sample) float64) []float64 {
		v := make([]float64, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		return v
	}
	ns := col(func(s sample) float64 { return s.ns })
	calls := col(func(s sample) float64 { return s.calls })
	return summary{
		runs:       len(ss),
		ns:         median(ns),
		bytes:      median(col(func(s sample) float64 { return s.bytes })),
		allocs:     median(col(func(s sample) float64 { return s.allocs })),
		goroutines: goroutineMedian(ss),
		calls:      median(calls),
		nsMin:      slices.Min(ns),
		nsMax:      slices.Max(ns),
		callsMin:   slices.Min(calls),
		callsMax:   slices.Max(calls),
		perRound:   ss,
		present:    true,
	}
}

// goroutineMedian is the median of goroutines/op, -1 if a run lacks it.
func goroutineMedian(ss []sample) float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		if s.goroutines < 0 {
			return -1
		}
		v[i] = s.goroutines
	}
	return median(v)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func render(w io.Writer, samples map[string][]sample) error {
	sum := make(map[string]summary, len(order))
	for _, name := range order {
		sum[name] = summarize(samples[name])
	}
	for _, name := range []string{bench.CaseGRPC, bench.CaseKratos, bench.CaseRampart} {
		if !sum[name].present {
			return fmt.Errorf("no results for %s/%s in the input", bench.Benchmark, name)
		}
	}

	// Numbers align right; the labels, padded to one width, stay left.
	width := 0
	for _, l := range labels {
		width = max(width, len(l))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\truns\tns/op (median)\tns/op (min-max)\tB/op\tallocs/op\tgoroutines/op\t\n", width, "case")
	for _, name := range order {
		s := sum[name]
		if !s.present {
			continue
		}
		fmt.Fprintf(tw, "%-*s\t%d\t%.0f\t%.0f-%.0f\t%.0f\t%.0f\t%s\t\n",
			width, labels[name], s.runs, s.ns, s.nsMin, s.nsMax, s.bytes, s.allocs, goroutines(s.goroutines))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	a, b, c := sum[bench.CaseGRPC], sum[bench.CaseKratos], sum[bench.CaseRampart]
	fmt.Fprintln(w)
	lo, hi := roundRatios(c, b)
	fmt.Fprintf(w, "(c)/(b) latency  %.2f  (per round %.2f-%.2f)  target <= %.2f: %s\n",
		c.ns/b.ns, lo, hi, targetVsKratos, verdict(c.ns/b.ns <= targetVsKratos))
	fmt.Fprintf(w, "(c)-(b) allocs   %+.0f  target <= %+d: %s\n",
		c.allocs-b.allocs, targetExtraVsKratos, verdict(c.allocs-b.allocs <= targetExtraVsKratos))
	lo, hi = roundRatios(c, a)
	fmt.Fprintf(w, "(c)/(a) latency  %.2f  (per round %.2f-%.2f)\n", c.ns/a.ns, lo, hi)
	fmt.Fprintf(w, "(c)-(a) allocs   %+.0f\n", c.allocs-a.allocs)
	fmt.Fprintf(w, "(b)/(a) latency  %.2f\n", b.ns/a.ns)
	fmt.Fprintf(w, "(b)-(a) allocs   %+.0f\n", b.allocs-a.allocs)
	if u := sum[bench.CaseRampartUnsampled]; u.present {
		lo, hi := roundRatios(u, a)
		fmt.Fprintf(w, "(c')/(a) latency %.2f  (per round %.2f-%.2f)  target <= %.2f: %s\n",
			u.ns/a.ns, lo, hi, targetUnsampledVsGRPC, verdict(u.ns/a.ns <= targetUnsampledVsGRPC))
		fmt.Fprintf(w, "(c)/(c') latency %.2f  (cost of recording the spans)\n", c.ns/u.ns)
		fmt.Fprintf(w, "(c)-(c') allocs  %+.0f\n", c.allocs-u.allocs)
	}
	if d := sum[bench.CaseHTTP]; d.present {
		lo, hi := roundRatios(d, c)
		fmt.Fprintf(w, "(d)/(c) latency  %.2f  (per round %.2f-%.2f; the HTTP path against the gRPC path)\n", d.ns/c.ns, lo, hi)
		fmt.Fprintf(w, "(d)-(c) allocs   %+.0f\n", d.allocs-c.allocs)
	}
	if e := sum[bench.CaseMTLS]; e.present {
		lo, hi := roundRatios(e, c)
		fmt.Fprintf(w, "(e)/(c) latency  %.2f  (per round %.2f-%.2f; mTLS against plaintext, handshakes excluded)\n", e.ns/c.ns, lo, hi)
		fmt.Fprintf(w, "(e)-(c) allocs   %+.0f\n", e.allocs-c.allocs)
	}
	return nil
}

// throughputOrder are the cases BenchmarkThroughput runs.
var throughputOrder = []string{bench.CaseGRPC, bench.CaseKratos, bench.CaseRampart}

// renderThroughput prints BenchmarkThroughput's cases, taken out of other,
// and the cost ratios at saturation (the inverse of the calls/s ratios)
// beside the latency ratios of one call in flight. Nothing when the output
// has no throughput results.
func renderThroughput(w io.Writer, unary, other map[string][]sample) error {
	prefix := bench.Throughput + "/"
	sum := make(map[string]summary, len(throughputOrder))
	for name, ss := range other {
		if c, ok := strings.CutPrefix(name, prefix); ok {
			sum[c] = summarize(ss)
			delete(other, name)
		}
	}
	if len(sum) == 0 {
		return nil
	}
	for _, name := range throughputOrder {
		s := sum[name]
		if !s.present {
			return fmt.Errorf("no results for %s/%s in the input", bench.Throughput, name)
		}
		if s.calls < 0 {
			return fmt.Errorf("%s/%s: no calls/s in its results", bench.Throughput, name)
		}
	}
	width := 0
	for _, l := range labels {
		width = max(width, len(l))
	}
	fmt.Fprintf(w, "\n%d calls in flight (%s)\n", bench.InFlight, bench.Throughput)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\truns\tcalls/s (median)\tcalls/s (min-max)\tB/op\tallocs/op\tgoroutines/op\t\n", width, "case")
	for _, name := range throughputOrder {
		s := sum[name]
		fmt.Fprintf(tw, "%-*s\t%d\t%.0f\t%.0f-%.0f\t%.0f\t%.0f\t%s\t\n",
			width, labels[name], s.runs, s.calls, s.callsMin, s.callsMax, s.bytes, s.allocs, goroutines(s.goroutines))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	one := make(map[string]summary, len(throughputOrder))
	for _, name := range throughputOrder {
		one[name] = summarize(unary[name])
	}
	fmt.Fprintf(w, "\ncost per call     1 in flight (ns/op)  %d in flight (1 / calls/s)\n", bench.InFlight)
	for _, r := range []struct{ label, x, base string }{
		{"(c)/(a)", bench.CaseRampart, bench.CaseGRPC},
		{"(c)/(b)", bench.CaseRampart, bench.CaseKratos},
		{"(b)/(a)", bench.CaseKratos, bench.CaseGRPC},
	} {
		fmt.Fprintf(w, "%-16s  %19.2f  %26.2f\n", r.label, one[r.x].ns/one[r.base].ns, sum[r.base].calls/sum[r.x].calls)
	}
	return nil
}

// roundRatios returns the smallest and largest ratio of x to base in
// latency over the rounds both have, pairing the i-th samples.
func roundRatios(x, base summary) (lo, hi float64) {
	n := min(len(x.perRound), len(base.perRound))
	r := make([]float64, n)
	for i := range n {
		r[i] = x.perRound[i].ns / base.perRound[i].ns
	}
	return slices.Min(r), slices.Max(r)
}

// goroutines formats the goroutines/op median, "-" when missing.
func goroutines(v float64) string {
	if v < 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// renderOther prints the medians of the benchmarks beside BenchmarkUnary
// (the validation middleware on its own, say), sorted by name.
func renderOther(w io.Writer, other map[string][]sample) error {
	if len(other) == 0 {
		return nil
	}
	names := slices.Sorted(maps.Keys(other))
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "other benchmarks\truns\tns/op (median)\tB/op\tallocs/op\t\n")
	for _, name := range names {
		s := summarize(other[name])
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f\t\n", name, s.runs, s.ns, s.bytes, s.allocs)
	}
	return tw.Flush()
}
