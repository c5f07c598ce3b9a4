// Package biz is where a Rampart service's business logic lives, one
// package per service: internal/biz/<svc> holds that service's domain
// types, use cases, the repository interfaces the data layer implements,
// and its own domain errors. This package keeps only what every service
// shares: the errors a call to another service can end in.
//
// The rule for the sub-packages: a service's biz package imports no other
// service's biz package. When a use case needs what another service owns,
// it declares its own view of it (user's biz reads orders as user.Order,
// order's biz checks buyers through order.Buyers), and the data layer's
// client maps the other service's replies and reasons onto that view. So
// each binary links only its own domain, and a new service adds a package
// instead of growing a shared one. Nothing here or below imports gRPC,
// Consul or Kratos transport, so a use case can be read and tested without
// the network. Where two meet, importers alias a service's package as
// <svc>biz (userbiz, orderbiz).
package biz
