package chaos_test

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/cmd/devstack/demo"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/test/chaos"
)

const (
	getUser     = "/user.v1.UserService/GetUser"
	createOrder = "/order.v1.OrderService/CreateOrder"

	// Values of configs/order.yaml the assertions derive from.
	methodTimeout  = 2 * time.Second        // clients.user.timeout
	attemptTimeout = 500 * time.Millisecond // clients.user.attempt_timeout
	firstBackoff   = 50 * time.Millisecond  // clients.user.retry.initial_backoff: the first backoff is at most this
	budgetFloor    = 100                    // clients.user.budget.min_per_second (10) x its 10 s window

	// callTimeout is the driver's deadline on every call: longer than any
	// bound asserted, so the driver never hides a slow answer.
	callTimeout = 5 * time.Second
	// normalCall bounds one healthy call (two hops) with the race detector
	// on in the driver, on a machine left to the suite; the short run
	// scales it with the healthy calls it measured (mode.limit).
	normalCall = 150 * time.Millisecond
	// logTailLines is how much of each log a failed scenario prints.
	logTailLines = 40
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := devstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// stackOpts changes what startStack starts.
type stackOpts struct {
	users, orders int
	configs       map[string]string
	env           []string // extra environment of every instance
	consulAddr    string   // use this agent instead of starting one
	// security is devstack.StackConfig.Security: "" follows the configs,
	// devstack.SecurityMTLS asks for mtls (on an agent of the stack's own,
	// ACLs on) whatever they say.
	security string
}

// startStack starts a Consul dev agent of its own (unless o.consulAddr is
// set) and the instances, from the binaries built in TestMain, and stops
// all of it when the test ends, printing the logs' tails if it failed.
func startStack(t *testing.T, ctx context.Context, o stackOpts) *devstack.Stack {
	t.Helper()
	// The scenarios count instances: never reuse a developer's agent.
	t.Setenv(api.HTTPAddrEnvName, o.consulAddr)
	return devstacktest.Stack(t, ctx, devstack.StackConfig{
		RepoRoot: repoRoot(t),
		Services: demo.Services(o.users, o.orders),
		Configs:  o.configs,
		Env:      o.env,
		Bins:     bins,
		Security: o.security,
	})
}

// consulClient returns a client of the agent at addr, cleaned up with the test.
func consulClient(t *testing.T, addr string) *api.Client {
	t.Helper()
	return devstacktest.ConsulClient(t, addr)
}

// dial is a plain gRPC connection to the instance p of s: no retry, no
// discovery; in mtls with the certificate of devstack.ClientIdentity.
func dial(t *testing.T, s *devstack.Stack, p *devstack.ServiceProc) *grpc.ClientConn {
	t.Helper()
	return devstacktest.DialAddr(t, devstacktest.Certificates(t, s), p.GRPCAddr, p.Spec.Name)
}

// newBuyer creates a user through a plain client of one user instance.
func newBuyer(t *testing.T, ctx context.Context, s *devstack.Stack) string {
	t.Helper()
	reply, err := userv1.NewUserServiceClient(dial(t, s, s.Instances("user")[0])).
		CreateUser(ctx, &userv1.CreateUserRequest{Name: "Chaos Buyer", Email: "buyer@example.com"})
	if err != nil {
		t.Fatalf("create buyer: %v", err)
	}
	return reply.GetUser().GetId()
}

// newOrderCalls places buyer's orders through plain clients of the given
// order instances, in turn (chaos.OrderCalls).
func newOrderCalls(t *testing.T, s *devstack.Stack, procs []*devstack.ServiceProc, buyer string) *chaos.OrderCalls {
	t.Helper()
	clients := make([]orderv1.OrderServiceClient, 0, len(procs))
	for _, p := range procs {
		clients = append(clients, orderv1.NewOrderServiceClient(dial(t, s, p)))
	}
	return chaos.NewOrderCalls(buyer, clients...)
}

// seenTracker follows the per-method "seen" counters of /debug/faults on a
// set of instances: attempts that reached a server. An instance that dies
// keeps the last value read from it.
type seenTracker struct {
	method string
	first  map[*devstack.ServiceProc]int64
	last   map[*devstack.ServiceProc]int64
}

func newSeenTracker(t *testing.T, ctx context.Context, method string, procs []*devstack.ServiceProc) *seenTracker {
	t.Helper()
	st := &seenTracker{method: method, first: map[*devstack.ServiceProc]int64{}, last: map[*devstack.ServiceProc]int64{}}
	for _, p := range procs {
		st.add(t, ctx, p)
	}
	return st
}

// add starts following p from its current count.
func (st *seenTracker) add(t *testing.T, ctx context.Context, p *devstack.ServiceProc) {
	t.Helper()
	n := seen(t, ctx, p, st.method)
	st.first[p], st.last[p] = n, n
}

// read updates the counts of the instances still running and returns the
// total rise since each was added.
func (st *seenTracker) read(t *testing.T, ctx context.Context) int64 {
	t.Helper()
	var total int64
	for p := range st.first {
		select {
		case <-p.Exited():
		default:
			if n, ok := trySeen(ctx, p, st.method); ok {
				st.last[p] = n
			}
		}
		total += st.last[p] - st.first[p]
	}
	return total
}

func seen(t *testing.T, ctx context.Context, p *devstack.ServiceProc, method string) int64 {
	t.Helper()
	st, err := devstacktest.Faults(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Seen[method]
}

func trySeen(ctx context.Context, p *devstack.ServiceProc, method string) (int64, bool) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := devstacktest.Faults(ctx, p)
	if err != nil {
		return 0, false
	}
	return st.Seen[method], true
}

// scrape reads an instance's /metrics.
func scrape(ctx context.Context, httpAddr string) (devstack.Metrics, error) {
	return devstack.Scrape(ctx, httpAddr)
}

// metric reads one summed series of an instance's /metrics.
func metric(t *testing.T, ctx context.Context, p *devstack.ServiceProc, name, label string) float64 {
	t.Helper()
	m, err := scrape(ctx, p.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	return sum(m, name, label)
}

// sum adds the series of metric name whose labels contain label.
func sum(series devstack.Metrics, name, label string) float64 { return series.Sum(name, label) }

// retries reads order's count of GetUser retries.
func retries(t *testing.T, ctx context.Context, order *devstack.ServiceProc) float64 {
	t.Helper()
	return metric(t, ctx, order, "rampart_client_retries_total", `method="`+getUser+`"`)
}

// attemptsPerRequest is 1 + retries per request, as the table shows it.
func attemptsPerRequest(retried float64, requests int) string {
	if requests == 0 {
		return ""
	}
	return fmt.Sprintf("%.3f", 1+retried/float64(requests))
}

// goroutines reads go_goroutine_count from an instance's /metrics.
func goroutines(t *testing.T, ctx context.Context, p *devstack.ServiceProc) int {
	t.Helper()
	return int(metric(t, ctx, p, "go_goroutine_count", ""))
}

// peakRSS reads the peak resident set (VmHWM) of a running process, in KiB.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// serviceID finds the Consul ID of the instance serving gRPC on p's port.
func serviceID(t *testing.T, ctx context.Context, consul *api.Client, name string, p *devstack.ServiceProc) string {
	t.Helper()
	entries, _, err := consul.Health().Service(name, "", false, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(p.GRPCAddr)
	for _, e := range entries {
		if strconv.Itoa(e.Service.Port) == port {
			return e.Service.ID
		}
	}
	t.Fatalf("no %s instance on port %s in Consul", name, port)
	return ""
}

// waitCritical polls Consul until the instance id is no longer passing and
// returns when that was first seen.
func waitCritical(ctx context.Context, consul *api.Client, name, id string, limit time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		entries, _, err := consul.Health().Service(name, "", true, (&api.QueryOptions{}).WithContext(ctx))
		if err == nil {
			found := false
			for _, e := range entries {
				found = found || e.Service.ID == id
			}
			if !found {
				return time.Now(), nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s still passing after %s", id, limit)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// configWith writes a copy of configs/<service>.yaml with the values at
// the given dotted paths replaced, and returns its path.
func configWith(t *testing.T, service string, values map[string]any) string {
	t.Helper()
	overrides := make([]devstack.Override, 0, len(values))
	for path, value := range values {
		overrides = append(overrides, devstack.Override{Path: strings.Split(path, "."), Value: value})
	}
	file, err := devstack.WriteConfig(repoRoot(t), service, t.TempDir(), overrides...)
	if err != nil {
		t.Fatal(err)
	}
	return file
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// healthyAround is chaos.HealthyAround.
func healthyAround(cs chaos.Calls, faultAt, recoveredAt time.Time) chaos.Calls {
	return chaos.HealthyAround(cs, faultAt, recoveredAt)
}

// noteHealthy reports the baseline healthyAround returned.
func (sc *scenario) noteHealthy(what string, healthy chaos.Calls) {
	sc.note("%s: %d calls, p50 %s, p99 %s, max %s.",
		what, len(healthy), Dur(healthy.Quantile(0.5)), Dur(healthy.Quantile(0.99)), Dur(healthy.Max()))
}

// scenario collects a scenario's table and notes, logs them, and adds
// them to the report when the test ends, passed or not.
type scenario struct {
	t    *testing.T
	sec  *section
	rows []chaos.Row
}

func newScenario(t *testing.T, order int, title string) *scenario {
	sc := &scenario{t: t, sec: &section{order: order, title: title}}
	t.Cleanup(func() {
		sc.sec.passed = !t.Failed()
		sc.sec.table = chaos.Table(sc.rows)
		t.Logf("%s\n%s%s", title, sc.sec.table, "  "+strings.Join(sc.sec.notes, "\n  "))
		addSection(sc.sec)
	})
	return sc
}

// row adds a client's line to the table, and its calls to the picture.
func (sc *scenario) row(r chaos.Row) {
	sc.rows = append(sc.rows, r)
	sc.sec.series = append(sc.sec.series, chaos.Series{Client: r.Client, Calls: r.Calls})
}

// part adds a line of a subset of an earlier row's calls ("… of which
// failed"): to the table only, as the picture shows them in that row's.
func (sc *scenario) part(r chaos.Row) { sc.rows = append(sc.rows, r) }

// fault records a span of the run the picture shades, with its label.
func (sc *scenario) fault(from, to time.Time, label string) {
	sc.sec.windows = append(sc.sec.windows, chaos.Window{From: from, To: to, Label: label})
}

func (sc *scenario) note(format string, args ...any) {
	sc.sec.notes = append(sc.sec.notes, fmt.Sprintf(format, args...))
}

// histQuantile estimates quantile q of a Prometheus histogram in series
// (the upper bound of the bucket it falls in), over the series whose labels
// contain label; since0 holds the same series read earlier, to subtract.
func histQuantile(now, since0 map[string]float64, name, label string, q float64) time.Duration {
	type bucket struct {
		le    float64
		count float64
	}
	var buckets []bucket
	for k, v := range now {
		n, labels, _ := strings.Cut(k, "{")
		if n != name+"_bucket" || !strings.Contains(labels, label) {
			continue
		}
		_, rest, ok := strings.Cut(labels, `le="`)
		if !ok {
			continue
		}
		leStr, _, _ := strings.Cut(rest, `"`)
		le, err := strconv.ParseFloat(leStr, 64)
		if err != nil {
			continue
		}
		buckets = append(buckets, bucket{le: le, count: v - since0[k]})
	}
	if len(buckets) == 0 {
		return 0
	}
	slices.SortFunc(buckets, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	total := buckets[len(buckets)-1].count
	for _, b := range buckets {
		if b.count >= q*total {
			return time.Duration(b.le * float64(time.Second))
		}
	}
	return 0
}
