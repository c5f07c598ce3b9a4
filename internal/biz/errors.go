package biz

import "errors"

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
