package devstack

import (
	"os"
	"syscall"
)

// Exposed to the black-box tests of ports.go.
var (
	PortRanges     = portRanges
	LeasePorts     = leasePorts
	EphemeralRange = ephemeralRange
)

type PortSpan = portSpan

// NewPortSpan builds a span for table tests.
func NewPortSpan(lo, hi int) PortSpan { return portSpan{lo, hi} }

// Ports and Release expose a lease.
func (l *portLease) Ports() []int { return l.ports }
func (l *portLease) Release()     { l.release() }

// SetAfterLease installs the collision hook until the returned func runs.
func SetAfterLease(f func(ports []int)) (restore func()) {
	afterLease = f
	return func() { afterLease = nil }
}

// ConsulStarts is how many times the agent process was started.
func ConsulStarts(a *ConsulAgent) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.starts
}

// TryLock reports whether the port lock on f can be taken (and takes it).
func TryLock(f *os.File) bool {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}
