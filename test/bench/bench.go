// Package bench measures what Rampart's client and server chains cost on
// one unary call, against two baselines in the same process and the same
// run: bare grpc-go and Kratos' stock chain. Every case serves the same
// handler (the user service's GetUser over an in-memory store) over real
// loopback TCP, so the differences are the chains and nothing else. A
// second benchmark runs (a), (b) and (c) at saturation, InFlight calls at
// once, where what counts is the CPU a call costs rather than its latency.
//
// The benchmarks are in the _test files; run them with `make bench`, which
// also prints medians and ratios through ./report. This file only names the
// cases, so the report and the benchmarks cannot disagree on them.
package bench

// Benchmark is the benchmark function the cases run under, as sub-benchmarks:
// one call in flight at a time.
const Benchmark = "BenchmarkUnary"

// Throughput is the benchmark function that runs CaseGRPC, CaseKratos and
// CaseRampart at saturation: InFlight calls in flight at once over one
// connection (b.RunParallel), reporting calls/s beside allocs/op.
const Throughput = "BenchmarkThroughput"

// InFlight is how many calls Throughput keeps in flight: GOMAXPROCS times
// the parallelism it sets, 2 × 32 on the 2-CPU machines the figures in
// docs/performance.md come from.
const InFlight = 64

// Case names, as they follow "BenchmarkUnary/" in the go test output. The
// letters keep the order of the (a), (b), (c).
const (
	// CaseGRPC is bare grpc-go: grpc.NewServer and grpc.NewClient with
	// insecure credentials and no interceptor. The baseline.
	CaseGRPC = "a_grpc"
	// CaseKratos is Kratos' stock chain: a Kratos gRPC server with recovery
	// and tracing middleware, and a Kratos client with recovery,
	// circuitbreaker and tracing, both tracing into an SDK TracerProvider
	// that samples every span.
	CaseKratos = "b_kratos"
	// CaseRampart is Rampart's client and server chains built exactly as the
	// services build them (faults empty, shedding on), with Rampart's
	// tracing sampling every call.
	CaseRampart = "c_rampart"
	// CaseRampartUnsampled is CaseRampart with a sampler that samples
	// nothing, so the cost of recording spans shows as the difference.
	CaseRampartUnsampled = "c_rampart_unsampled"
	// CaseHTTP is the same call over HTTP/JSON: net/http's client, a GET
	// /v1/users/{id} to the gateway, which calls CaseRampart's server over
	// loopback (no client chain: the gateway is a client of its own
	// instance), sampled. Against CaseRampart it is the HTTP path's cost per
	// call against the gRPC path's.
	CaseHTTP = "d_http"
	// CaseMTLS is CaseRampart in security.mode mtls: the server takes only
	// mutual TLS and runs the authorization step, the client presents its
	// certificate and checks the server's SPIFFE ID. Certificates come from
	// a test CA (internal/mtls/mtlstest) and the authorizer allows every
	// caller, so the figure is TLS on an open connection plus the step
	// itself, not a Consul lookup (a decision is cached for
	// security.authz_cache_ttl). Handshakes happen in the warm-up only.
	CaseMTLS = "e_rampart_mtls"
)
