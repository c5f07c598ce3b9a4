// Package v1 is the user service API: the generated messages and client,
// and the Validate methods the server runs before any handler.
package v1

import (
	"strings"

	"github.com/rampart-go/rampart/internal/validate"
)

// Validate rejects a CreateUserRequest with a blank name or a malformed email.
func (r *CreateUserRequest) Validate() error {
	return validate.First(
		validate.Text("name", r.GetName(), 100),
		validate.Text("email", r.GetEmail(), 254),
		emailShape(r.GetEmail()),
	)
}

// Validate rejects a GetUserRequest whose id is not a UUID.
func (r *GetUserRequest) Validate() error { return validate.ID("id", r.GetId()) }

// Validate rejects a GetUserProfileRequest whose id is not a UUID.
func (r *GetUserProfileRequest) Validate() error { return validate.ID("id", r.GetId()) }

// emailShape checks only the shape a typo breaks; deliverability is not ours to judge.
func emailShape(v string) error {
	at := strings.LastIndexByte(v, '@')
	if at <= 0 || at == len(v)-1 || strings.ContainsAny(v, " \t\r\n") {
		return validate.Field("email", "must look like name@domain")
	}
	return nil
}
