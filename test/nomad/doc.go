// Package nomad proves the Nomad job specs in deploy/nomad on a real Nomad
// dev agent, a real Consul dev agent and the real service binaries: the
// jobs' service blocks own the Consul registration (the services run with
// registry.self_register false), and neither losing an allocation nor a
// rolling update fails a call. It needs bin/nomad; `make test-nomad`
// builds it and runs this package.
package nomad
