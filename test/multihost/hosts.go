// Package multihost is the chaos suite across hosts: test hosts as Linux
// network namespaces joined by a bridge, a Consul client agent on each
// service host, and faults as packets (blackhole, partition, loss) instead
// of signals. `make test-multihost` runs each scenario for a few seconds;
// `make chaos-multihost` runs them at full length.
//
// The hosts, all on 10.231.7.0/24 and named with the prefix rpt-mh-:
//
//	ctl 10.231.7.1   the Consul server (-server -bootstrap-expect 1, Connect on) and the load driver
//	a   10.231.7.2   a Consul client agent; one user and one order instance
//	b   10.231.7.3   the same
//	db  10.231.7.4   PostgreSQL, which every instance shares
//
// The bridge lives in a namespace of its own (rpt-mh-sw, the "switch"),
// each host has one end of a veth pair in it (eth0 on the host), and the
// machine's own namespace gets nothing: no address, route, link or rule,
// so nothing a run does touches the machine's network. Each namespace has
// its own port space, so every host uses the well-known ports (8500 and
// 8300-8302 for Consul, 5432 for PostgreSQL, fixed service ports), which
// keeps the configs readable.
//
// How processes get into a host: every process of a run is started from
// a goroutine locked to its OS thread after setns(2) on that thread (the
// CNI way), which the child inherits, then the thread is set back
// (Host.Start). `ip netns exec` would do for root's processes, but not for
// PostgreSQL, which runs as nobody (it refuses root), and nobody may not
// setns. One way for all is simpler to reason about.
//
// How the load driver gets into ctl: the test binary runs twice. The
// first run (TestMain, in the machine's namespace) takes a lock, removes
// what a crashed earlier run left, builds the binaries and the namespaces,
// then starts itself again inside ctl and waits for it; when that ends, by
// passing, failing, panicking or timing out, it removes the namespaces
// and checks that nothing with the prefix remains (namespace, link,
// process, iptables rule), failing the run otherwise. The second run is
// the test proper: every socket it opens is ctl's, so the driver's gRPC
// clients (Rampart's own client chain, over discovery), its Consul client
// and its PostgreSQL connections need no dialer of their own, and the
// process under test cannot leave the topology behind however it dies.
// Dialing from the machine's namespace through a per-socket setns dialer
// would have to reach into server.NewDialer, which has no dialer hook.
//
// Security: the services run in mtls (the shipped configs' mode) with
// leaf certificates from their local agent. ACLs stay off on this cluster
// (one test network, nothing else on it); intentions are made to mean
// something by a default-deny wildcard intention (* -> * deny) plus the
// allows the demo needs (order -> user, user -> order, the driver's
// identity -> both), so authorization by intentions is exercised across
// hosts: an instance on a asks a's agent, which asks the servers.
//
// Faults are iptables rules (Debian's iptables, the nf_tables backend,
// which this kernel runs; the legacy one works too; -m statistic for loss,
// conntrack's direction for the asymmetric partition) in a chain of each
// host's own, mh-fault, hooked into INPUT and OUTPUT; healing flushes the
// chain. They vanish with the namespace. The kernel has no netem, so
// latency comes from Shopify's toxiproxy (tools/toxiproxy pins it): a
// toxiproxy-server on a stands in front of each instance's gRPC port, which
// the instance advertises in Consul (server.grpc.advertise), so every call
// into a passes through it, and one on db stands in front of PostgreSQL,
// where the services' DATABASE_URL points; the test adds and removes a
// latency toxic through toxiproxy's Go client.
//
// Leftovers: a run takes /run/rpt-mh.lock, so two runs on a machine wait
// for each other instead of tearing down each other's hosts; it starts by
// removing every namespace with the prefix and killing every process with
// MarkerEnv (a crashed run's), and ends by checking that none is left.
package multihost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Prefix starts the name of every namespace a run creates.
const Prefix = "rpt-mh-"

// MarkerEnv is set in the environment of every process a run starts, so
// that a sweep finds them even outside the namespaces.
const MarkerEnv = "RPT_MH_RUN"

// SubnetBits is the test network's prefix length.
const SubnetBits = 24

// Subnet is the test network.
const Subnet = "10.231.7.0/24"

// switchNS holds the bridge.
const switchNS = Prefix + "sw"

// ethDev is each host's end of its veth pair.
const ethDev = "eth0"

// drop is iptables' target for a lost packet.
const drop = "DROP"

// faultChain is each host's chain of fault rules.
const faultChain = "mh-fault"

// Host is one test host: a network namespace with one address.
type Host struct {
	Name string // ctl, a, b, db
	NS   string // the namespace, Prefix + Name
	IP   string
}

// The test hosts.
var (
	Ctl = Host{Name: "ctl", NS: Prefix + "ctl", IP: "10.231.7.1"}
	A   = Host{Name: "a", NS: Prefix + "a", IP: "10.231.7.2"}
	B   = Host{Name: "b", NS: Prefix + "b", IP: "10.231.7.3"}
	DB  = Host{Name: "db", NS: Prefix + "db", IP: "10.231.7.4"}
)

// Hosts are every test host.
var Hosts = []Host{Ctl, A, B, DB}

// Addr is ip:port on h.
func (h Host) Addr(port int) string { return h.IP + ":" + strconv.Itoa(port) }

// ip runs `ip args...`.
func ip(ctx context.Context, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Build creates the switch and the hosts. A failure leaves what it made
// for Teardown.
func Build(ctx context.Context) error {
	// The commands as `ip` reads them, one a line.
	script := []string{
		"netns add " + switchNS,
		"-n " + switchNS + " link set lo up",
		"-n " + switchNS + " link add br0 type bridge",
		"-n " + switchNS + " link set br0 up",
	}
	for _, h := range Hosts {
		port := "mh-" + h.Name // in the switch; at most 15 characters
		script = append(script,
			"netns add "+h.NS,
			"-n "+h.NS+" link set lo up",
			"-n "+switchNS+" link add "+port+" type veth peer name "+ethDev+" netns "+h.NS,
			"-n "+switchNS+" link set "+port+" master br0",
			"-n "+switchNS+" link set "+port+" up",
			"-n "+h.NS+" addr add "+h.IP+"/"+strconv.Itoa(SubnetBits)+" dev "+ethDev,
			"-n "+h.NS+" link set "+ethDev+" up",
		)
	}
	steps := make([][]string, 0, len(script))
	for _, line := range script {
		steps = append(steps, strings.Fields(line))
	}
	for _, s := range steps {
		if _, err := ip(ctx, s...); err != nil {
			return fmt.Errorf("build hosts: %w", err)
		}
	}
	for _, h := range Hosts {
		// The last rule changes nothing (the policy accepts) but has
		// connection tracking follow every connection from the start, so
		// that DropTo tells who opened one.
		for _, rule := range [][]string{
			{"-N", faultChain},
			{"-I", "INPUT", "-j", faultChain},
			{"-I", "OUTPUT", "-j", faultChain},
			{"-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
		} {
			if err := h.iptables(ctx, rule...); err != nil {
				return fmt.Errorf("build hosts: %w", err)
			}
		}
	}
	return nil
}

// namespaces lists the namespaces whose name starts with Prefix.
func namespaces(ctx context.Context) ([]string, error) {
	out, err := ip(ctx, "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], Prefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// Teardown kills every process of a run (in the namespaces or marked) and
// deletes the namespaces, which takes their links and rules with them. It
// removes a crashed run's leftovers as well as this run's.
func Teardown(ctx context.Context) error {
	var errs []error
	names, err := namespaces(ctx)
	errs = append(errs, err)
	for _, ns := range names {
		out, _ := ip(ctx, "netns", "pids", ns)
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, pid := range markedProcesses() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	// A killed process is gone from the namespace once it is reaped; the
	// namespace's mount goes at once, the namespace with its last user.
	for _, ns := range names {
		if _, err := ip(ctx, "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Leftovers lists what a run left behind: namespaces with the prefix,
// links with it in this namespace, processes with MarkerEnv, iptables
// rules of the fault chain in this namespace. Processes are given a few
// seconds to be reaped.
func Leftovers(ctx context.Context) ([]string, error) {
	var left []string
	names, err := namespaces(ctx)
	if err != nil {
		return nil, err
	}
	for _, ns := range names {
		left = append(left, "namespace "+ns)
	}
	out, err := ip(ctx, "-o", "link", "show")
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 1 && (strings.HasPrefix(f[1], "mh-") || strings.HasPrefix(f[1], Prefix)) {
			left = append(left, "link "+strings.TrimSuffix(f[1], ":"))
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	pids := markedProcesses()
	for len(pids) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		pids = markedProcesses()
	}
	for _, pid := range pids {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		left = append(left, fmt.Sprintf("process %d (%s)", pid, strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")))
	}
	if rules, err := exec.CommandContext(ctx, "iptables", "-S").Output(); err == nil && strings.Contains(string(rules), faultChain) {
		left = append(left, "iptables rules of "+faultChain+" in the machine's namespace")
	}
	return left, nil
}

// markedProcesses are the live processes with MarkerEnv in their
// environment, this one excepted. A zombie's environment reads empty.
func markedProcesses() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		if slices.ContainsFunc(bytes.Split(env, []byte{0}), func(kv []byte) bool { return bytes.HasPrefix(kv, []byte(MarkerEnv+"=")) }) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Start starts cmd inside h: on an OS thread of its own, switched to h's
// namespace for the fork and back after, so the child (and everything it
// starts) lives in h while this process stays where it is. cmd gets
// MarkerEnv. A thread that cannot be switched back is left locked, so the
// runtime ends it rather than reuse it (its children then get their
// Pdeathsig, if they asked for one).
func (h Host) Start(cmd *exec.Cmd) error {
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, MarkerEnv+"=1")
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer func() { _ = back.Close() }()
		target, err := os.Open("/run/netns/" + h.NS)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("host %s: %w", h.Name, err)
			return
		}
		defer func() { _ = target.Close() }()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("host %s: setns: %w", h.Name, err)
			return
		}
		startErr := cmd.Start()
		if err := unix.Setns(int(back.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(startErr, fmt.Errorf("host %s: setns back: %w", h.Name, err))
			return // still locked: the thread ends with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- startErr
	}()
	return <-errc
}

// Exec runs `name args...` inside h and returns its combined output.
func (h Host) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s on %s: %w: %s", name, h.Name, err, bytes.TrimSpace(out))
	}
	return out, nil
}

func (h Host) iptables(ctx context.Context, args ...string) error {
	_, err := h.Exec(ctx, "iptables", append([]string{"-w"}, args...)...)
	return err
}

// Fault adds rules (iptables arguments after `-A mh-fault`) to h's fault
// chain, which INPUT and OUTPUT jump to.
func (h Host) Fault(ctx context.Context, rules ...[]string) error {
	for _, r := range rules {
		if err := h.iptables(ctx, append([]string{"-A", faultChain}, r...)...); err != nil {
			return err
		}
	}
	return nil
}

// Heal removes every fault rule of h.
func (h Host) Heal(ctx context.Context) error { return h.iptables(ctx, "-F", faultChain) }

// Blackhole drops every packet in and out of h's eth0 (lo keeps working):
// peers see no reset, only silence.
var Blackhole = [][]string{{"-i", ethDev, "-j", drop}, {"-o", ethDev, "-j", drop}}

// Loss drops each packet in and out of eth0 with probability p.
func Loss(p float64) [][]string {
	prob := strconv.FormatFloat(p, 'f', -1, 64)
	return [][]string{
		{"-i", ethDev, "-m", "statistic", "--mode", "random", "--probability", prob, "-j", drop},
		{"-o", ethDev, "-m", "statistic", "--mode", "random", "--probability", prob, "-j", drop},
	}
}

// ConsulPorts are the ports agents and servers talk on (server RPC, LAN
// and WAN gossip); the HTTP API (8500) stays local to each host.
const ConsulPorts = "8300,8301,8302"

// CutFrom drops, on h, every Consul packet exchanged with peer (TCP and
// UDP, either side's port), and nothing else.
func CutFrom(peer Host) [][]string {
	var rules [][]string
	for _, proto := range []string{"tcp", "udp"} {
		for _, dir := range []string{"--sports", "--dports"} {
			rules = append(rules,
				[]string{"-i", ethDev, "-s", peer.IP, "-p", proto, "-m", "multiport", dir, ConsulPorts, "-j", drop},
				[]string{"-o", ethDev, "-d", peer.IP, "-p", proto, "-m", "multiport", dir, ConsulPorts, "-j", drop})
		}
	}
	return rules
}

// DropTo drops, on h, the packets of every connection h opens to peer
// (connection tracking's original direction), old and new, and lets
// through h's answers on connections peer opened: installed on b with
// peer a, b cannot reach a while a still reaches b. Gossip is UDP between
// the same two ports both ways, which connection tracking takes for one
// flow opened by whoever sent first.
func DropTo(peer Host) [][]string {
	return [][]string{{"-o", ethDev, "-d", peer.IP, "-m", "conntrack", "--ctdir", "ORIGINAL", "-j", drop}}
}
