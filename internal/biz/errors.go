package biz

import "errors"

// Domain errors. Use cases wrap them with %w; the service layer maps each to
// a gRPC code and reason, and a calling service's data layer maps that
// reason back, so errors.Is holds on both sides of the network.
var (
	// ErrUserNotFound: no user has the given ID.
	ErrUserNotFound = errors.New("user not found")
	// ErrOrderNotFound: no order has the given ID.
	ErrOrderNotFound = errors.New("order not found")
	// ErrInvalidQuantity: an order line must have a positive quantity.
	ErrInvalidQuantity = errors.New("quantity must be positive")
	// ErrInvalidUser: a user needs a name and an email.
	ErrInvalidUser = errors.New("user needs a name and an email")
	// ErrIdempotencyKeyReused: the key was first used for a different order.
	ErrIdempotencyKeyReused = errors.New("idempotency key was used for a different order")
)

// ErrReplyTooLarge means a service this call needs answered, but with a
// reply larger than this service accepts (gRPC's message size limit). The
// dependency is healthy and asking again gets the same reply, so it is
// neither retried nor reported as the dependency being down.
var ErrReplyTooLarge = errors.New("a dependency's reply is larger than this service accepts")

// ErrDependencyUnavailable means a service this call needs could not be
// reached or shed the call. The data layer reports it as a DependencyError, so
// the service layer can answer Unavailable without knowing about gRPC clients.
var ErrDependencyUnavailable = errors.New("a service this call depends on is unavailable")

// DependencyError is ErrDependencyUnavailable for one named dependency. It
// keeps the transport error apart from the name because the two have
// different readers: the caller may learn which dependency is down, but only
// the log may see the cause, which holds addresses of internal instances.
type DependencyError struct {
	Dependency string
	Err        error
}

func (e *DependencyError) Error() string {
	return e.Dependency + ": " + ErrDependencyUnavailable.Error() + ": " + e.Err.Error()
}

// Unwrap makes errors.Is hold for ErrDependencyUnavailable and for
// everything the transport error wraps.
func (e *DependencyError) Unwrap() []error { return []error{ErrDependencyUnavailable, e.Err} }
