package devstack

import "syscall"

// consulSysProcAttr puts the agent in its own process group, so Stop can
// signal everything it started, and has the kernel SIGKILL it if our process
// dies first (a crashed test binary or a Ctrl-C'd make run leaves no agent).
func consulSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
