package devstack

// ConsulPID exposes the agent's process ID to the black-box tests, which
// check that Stop and Kill leave no process behind. 0 when none runs.
func ConsulPID(a *ConsulAgent) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc == nil {
		return 0
	}
	return a.proc.cmd.Process.Pid
}
