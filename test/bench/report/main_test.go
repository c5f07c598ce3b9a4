package main

import (
	"strings"
	"testing"
)

// Two rounds of four cases, as make bench writes them, with the noise a
// real file has around the result lines.
const twoRounds = `goos: linux
goarch: amd64
pkg: github.com/rampart-go/rampart/test/bench
cpu: AMD EPYC
BenchmarkUnary/a_grpc-2      	   16281	     100000 ns/op	         1.000 goroutines/op	    9000 B/op	     160 allocs/op
BenchmarkUnary/b_kratos-2    	   10000	     140000 ns/op	   20000 B/op	     260 allocs/op
BenchmarkUnary/c_rampart-2   	   10000	     110000 ns/op	   12000 B/op	     200 allocs/op
BenchmarkUnary/c_rampart_unsampled-2	   10000	     160000 ns/op	   11000 B/op	     190 allocs/op
BenchmarkUnary/d_http-2      	   10000	     165000 ns/op	   30000 B/op	     300 allocs/op
PASS
BenchmarkUnary/a_grpc-2      	   16281	     200000 ns/op	         1.010 goroutines/op	    9100 B/op	     162 allocs/op
BenchmarkUnary/b_kratos-2    	   10000	     260000 ns/op	   20000 B/op	     262 allocs/op
BenchmarkUnary/c_rampart-2   	   10000	     240000 ns/op	   12000 B/op	     202 allocs/op
BenchmarkUnary/c_rampart_unsampled-2	   10000	     320000 ns/op	   11000 B/op	     192 allocs/op
BenchmarkUnary/d_http-2      	   10000	     240000 ns/op	   30000 B/op	     304 allocs/op
BenchmarkUnary/e_rampart_mtls-2	   10000	     264000 ns/op	   13000 B/op	     222 allocs/op
BenchmarkThroughput/a_grpc-2    	   40000	      25000 ns/op	     40000 calls/s	         1.000 goroutines/op	   10900 B/op	     156 allocs/op
BenchmarkThroughput/b_kratos-2  	   12000	      80000 ns/op	     12500 calls/s	         3.000 goroutines/op	   21800 B/op	     261 allocs/op
BenchmarkThroughput/c_rampart-2 	   10000	     100000 ns/op	     10000 calls/s	         3.000 goroutines/op	   31400 B/op	     376 allocs/op
BenchmarkThroughput/a_grpc-2    	   40000	      20000 ns/op	     50000 calls/s	         1.000 goroutines/op	   10900 B/op	     156 allocs/op
BenchmarkThroughput/b_kratos-2  	   12000	      80000 ns/op	     12500 calls/s	         3.000 goroutines/op	   21800 B/op	     261 allocs/op
BenchmarkThroughput/c_rampart-2 	   10000	     125000 ns/op	      8000 calls/s	         3.000 goroutines/op	   31400 B/op	     376 allocs/op
BenchmarkValidation/GetUser-2  	 1000000	        700 ns/op	      48 B/op	       2 allocs/op
BenchmarkValidation/GetUser-2  	 1000000	        900 ns/op	      48 B/op	       2 allocs/op
ok  	github.com/rampart-go/rampart/test/bench	3.458s
`

func TestReport(t *testing.T) {
	var out strings.Builder
	if err := run(nil, strings.NewReader(twoRounds), &out); err != nil {
		t.Fatal(err)
	}
	// Compared field by field: column widths are not the point.
	got := strings.Join(strings.Fields(out.String()), " ")
	// Medians: a 150000 ns, 161 allocs, 1.005 goroutines; b 200000, 261,
	// none; c 175000, 201, none.
	for _, want := range []string{
		"(a) bare grpc-go 2 150000 100000-200000 9050 161 1.00",
		"(b) Kratos stock chain 2 200000 140000-260000 20000 261 -",
		// Issue 16's targets, one met, one missed: c' 240000 ns against a's
		// 150000.
		"(c)/(b) latency 0.88 (per round 0.79-0.92) target <= 1.00: met",
		"(c)-(b) allocs -60 target <= +0: met",
		"(c')/(a) latency 1.60 (per round 1.60-1.60) target <= 1.50: MISSED",
		"(c)/(a) latency 1.17 (per round 1.10-1.20)",
		"(c)-(a) allocs +40",
		"(b)-(a) allocs +100",
		// d: 202500 ns, 302 allocs.
		"(d) HTTP/JSON via the gateway 2 202500 165000-240000 30000 302 -",
		"(d)/(c) latency 1.16 (per round 1.00-1.50; the HTTP path against the gRPC path)",
		"(d)-(c) allocs +101",
		"BenchmarkValidation/GetUser 2 800 48 2",
		"(e)/(c) latency 1.51 (per round 2.40-2.40; mTLS against plaintext, handshakes excluded)",
		"(e)-(c) allocs +21",
		// Throughput medians: a 45000 calls/s, b 12500, c 9000.
		"64 calls in flight (BenchmarkThroughput)",
		"(a) bare grpc-go 2 45000 40000-50000 10900 156 1.00",
		"(c) Rampart chain, sampled 2 9000 8000-10000 31400 376 3.00",
		// One in flight (c)/(a) 175000/150000; at saturation 45000/9000.
		"(c)/(a) 1.17 5.00",
		"(c)/(b) 0.88 1.39",
		"(b)/(a) 1.33 3.60",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q; got:\n%s", want, out.String())
		}
	}
}

func TestReportRefusesIncompleteInput(t *testing.T) {
	tests := []struct {
		name, input string
	}{
		{name: "a case is missing", input: "BenchmarkUnary/a_grpc-2 10 5 ns/op 1 B/op 1 allocs/op\n"},
		{name: "no -benchmem", input: "BenchmarkUnary/a_grpc-2 10 5 ns/op\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := run(nil, strings.NewReader(tt.input), &strings.Builder{}); err == nil {
				t.Error("run succeeded, want an error")
			}
		})
	}
}

func TestCaseName(t *testing.T) {
	tests := map[string]string{
		"a_grpc-2":            "a_grpc",
		"a_grpc":              "a_grpc",
		"c_rampart_unsampled": "c_rampart_unsampled",
		"x-y":                 "x-y",
	}
	for in, want := range tests {
		if got := caseName(in); got != want {
			t.Errorf("caseName(%q) = %q, want %q", in, got, want)
		}
	}
}
