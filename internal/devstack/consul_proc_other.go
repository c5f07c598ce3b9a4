//go:build unix && !linux

package devstack

import "syscall"

// consulSysProcAttr puts the agent in its own process group, so Stop can
// signal everything it started. Only Linux can also tie the agent's life to
// ours; elsewhere an agent outlives a crashed parent.
func consulSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
