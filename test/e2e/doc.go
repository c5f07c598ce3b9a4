// Package e2e holds the process-level tests of Rampart: a real Consul agent
// and the real service binaries, built fresh from this tree, talking over
// loopback. The tests see the services only from outside (gRPC, HTTP
// probes, Consul's catalog, exit codes and logs), as an operator would.
//
// Every test starts what it needs on free ports and stops it in t.Cleanup,
// so each runs alone with `go test ./test/e2e/ -run TestX`.
package e2e
