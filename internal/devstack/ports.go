package devstack

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Ports for child processes.
//
// The Consul and Nomad agents and the service instances are told their
// ports before they start (flags, agent.hcl, RAMPART_*_ADDR), and the Consul
// and Nomad agents cannot report a port the kernel chose. A port found by
// binding :0 and closing comes from the kernel's ephemeral range, which every
// other :0 bind and every outgoing connection on the machine draws from
// too; with test packages running in parallel, another process took such a
// port before the child bound it, and the child exited with "address already
// in use". So ports are drawn from outside that range, where the kernel never
// hands one out by itself (see portRanges), and each port handed out is held
// under an flock on a file in the temp dir for as long as its owner keeps
// it, so two test binaries never hand out the same one. A child that still
// fails to bind (a process of someone else's on a fixed port) is started
// again on fresh ports a bounded number of times: see bindAttempts.

// bindAttempts bounds how often a child is started on fresh ports after a
// bind collision.
const bindAttempts = 3

// errAddrInUse is what a child's log says when one of its ports was taken.
const errAddrInUse = "address already in use"

// loopbackIP is where everything devstack starts listens unless told
// otherwise.
const loopbackIP = "127.0.0.1"

// isBindCollision reports whether a child exited at start because one of
// its ports was taken: the child's own log line is part of err.
func isBindCollision(err error) bool {
	return errors.Is(err, errExitedAtStart) && strings.Contains(err.Error(), errAddrInUse)
}

// errExitedAtStart marks a child (agent or instance) that exited before it
// was ready; with its log's reason in the message, isBindCollision tells
// whether fresh ports would help.
var errExitedAtStart = errors.New("exited")

// Nomad's default dynamic port range: a Nomad client hands these to its
// tasks without checking what else listens there, so devstack keeps out.
const (
	nomadDynamicMin = 20000
	nomadDynamicMax = 32000
)

// preferredPorts is where ports are drawn from when the kernel's ephemeral
// range (32768–60999 on Linux by default) leaves it alone: clear of the
// registered ports most daemons use and of Nomad's dynamic range.
var preferredPorts = portSpan{10000, nomadDynamicMin - 1}

// portSpan is an inclusive range of ports.
type portSpan struct{ lo, hi int }

func (s portSpan) size() int { return max(0, s.hi-s.lo+1) }

// minPortSpace is the fewest ports worth drawing from at random; below it
// collisions between pickers would be common, and a wider fallback is used.
const minPortSpace = 1000

// portRanges returns where to draw ports from given the kernel's ephemeral
// range [ephLo, ephHi]: preferredPorts less the ephemeral range, or, when
// that leaves fewer than minPortSpace ports (an unusual ip_local_port_range),
// every unprivileged port outside both the ephemeral and Nomad's dynamic
// range. Nil means nothing is left and the kernel must choose.
func portRanges(ephLo, ephHi int) []portSpan {
	subtract := func(spans []portSpan, cut portSpan) []portSpan {
		var out []portSpan
		for _, s := range spans {
			if left := (portSpan{s.lo, min(s.hi, cut.lo-1)}); left.size() > 0 {
				out = append(out, left)
			}
			if right := (portSpan{max(s.lo, cut.hi+1), s.hi}); right.size() > 0 {
				out = append(out, right)
			}
		}
		return out
	}
	total := func(spans []portSpan) int {
		n := 0
		for _, s := range spans {
			n += s.size()
		}
		return n
	}
	eph := portSpan{ephLo, ephHi}
	if spans := subtract([]portSpan{preferredPorts}, eph); total(spans) >= minPortSpace {
		return spans
	}
	spans := subtract(subtract([]portSpan{{1024, 65535}}, eph), portSpan{nomadDynamicMin, nomadDynamicMax})
	if total(spans) == 0 {
		return nil
	}
	return spans
}

// ephemeralRange reads the kernel's ephemeral port range; off Linux, or if
// it cannot be read, the Linux default.
func ephemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l > h {
		return lo, hi
	}
	return l, h
}

var portSpace = sync.OnceValue(func() []portSpan { return portRanges(ephemeralRange()) })

// portLease is a set of ports held for one child process. Release it once
// the child is gone for good; a restart on the same ports keeps it.
type portLease struct {
	ports []int
	mu    sync.Mutex
	locks []*os.File
}

// leasePorts reserves n distinct loopback ports, each free on TCP and UDP
// (Serf listens on both). Fixed ports the caller already owns are not
// included: pass them as avoid so none is handed out twice.
func leasePorts(n int, avoid ...int) (*portLease, error) {
	l := &portLease{}
	taken := func(p int) bool {
		for _, q := range avoid {
			if q == p {
				return true
			}
		}
		for _, q := range l.ports {
			if q == p {
				return true
			}
		}
		return false
	}
	spans := portSpace()
	for len(l.ports) < n {
		p, lock, err := pickPort(spans, taken)
		if err != nil {
			l.release()
			return nil, fmt.Errorf("reserve %d ports: %w", n, err)
		}
		l.ports = append(l.ports, p)
		if lock != nil {
			l.locks = append(l.locks, lock)
		}
	}
	if afterLease != nil {
		afterLease(l.ports)
	}
	return l, nil
}

// afterLease, when set by a test, runs after each lease is made: it takes
// a leased port the way an outside process would, between the pick and the
// child's bind, to prove the retry on fresh ports.
var afterLease func(ports []int)

// pickPort draws ports at random from spans until one is not taken, its
// lock file is not held by another process, and it binds on TCP and UDP.
// Without spans the kernel chooses (port 0), unlocked.
func pickPort(spans []portSpan, taken func(int) bool) (int, *os.File, error) {
	if len(spans) == 0 {
		for range 20 {
			p, err := kernelPort()
			if err != nil {
				return 0, nil, err
			}
			if !taken(p) && bindable(p) {
				return p, nil, nil
			}
		}
		return 0, nil, errors.New("no port free on both TCP and UDP")
	}
	dir := filepath.Join(os.TempDir(), "rampart-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return 0, nil, err
	}
	total := 0
	for _, s := range spans {
		total += s.size()
	}
	for range 500 {
		i := rand.IntN(total) //nolint:gosec // spreading picks, not a secret
		p := 0
		for _, s := range spans {
			if i < s.size() {
				p = s.lo + i
				break
			}
			i -= s.size()
		}
		if taken(p) {
			continue
		}
		lock, ok := lockPort(dir, p)
		if !ok {
			continue
		}
		if bindable(p) {
			return p, lock, nil
		}
		_ = lock.Close()
	}
	return 0, nil, errors.New("no free port after 500 tries")
}

// lockPort takes the flock of port p's file, without waiting. The lock
// goes with the file: closing it (or this process ending) frees the port.
func lockPort(dir string, p int) (*os.File, bool) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, false
	}
	return f, true
}

// bindable reports whether 127.0.0.1:p binds now on TCP and on UDP.
func bindable(p int) bool {
	var lc net.ListenConfig
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	t, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return false
	}
	_ = t.Close()
	u, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return false
	}
	_ = u.Close()
	return true
}

func kernelPort() (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// release frees the ports for other pickers. Safe on nil and twice.
func (l *portLease) release() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.locks {
		_ = f.Close()
	}
	l.locks = nil
}

// ReservePort returns a loopback port that stays reserved for this process
// until release is called: no bind on port 0 anywhere, and no other devstack
// user, can take it meanwhile. For a test that must know an address before
// the process that binds it exists (Consul down at start).
func ReservePort() (port int, release func(), err error) {
	l, err := leasePorts(1)
	if err != nil {
		return 0, nil, err
	}
	return l.ports[0], l.release, nil
}
