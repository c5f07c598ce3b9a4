// Package data holds what every service's data layer shares; each
// service's own data layer is internal/data/<svc>. A service's data package
// implements the repositories its biz package declares: stores for what the
// service owns (memory and SQLite), and gRPC clients for what another
// service owns. Transport errors are translated into the service's own biz
// errors there (through PeerError), so use cases never see a gRPC status.
//
// Shared here: dialing another service (DialService), the translation of a
// peer's failure (PeerError), and the SQLite open helper and write gate
// every SQL store uses. The rule for the sub-packages: a service's data
// package imports its own biz package and this one, never another service's
// biz or data package; it speaks to another service only through that
// service's API. Importers alias a service's package as <svc>data
// (userdata, orderdata).
package data
