// Package scaffold proves `make rename` and `make new-service` on a copy of
// this repository: the renamed tree builds, vets and passes its unit tests;
// the new service builds, registers in Consul as a process, answers through
// gRPC reflection and through discovery:///<name> with the client chain.
// Each test works in its own temp copy, so the checkout is never touched,
// and runs alone with `go test ./test/scaffold -run TestX`.
package scaffold
