// Package validate holds the small checks request messages use to reject bad
// input before any business logic runs. Every failure names the field, so the
// caller's InvalidArgument says which one to fix.
package validate

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
)

// FieldError says which request field is invalid and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// FieldName is the invalid field, for callers that see the error through
// an interface (the validation middleware puts it in the error's metadata).
func (e *FieldError) FieldName() string { return e.Field }

// Field returns a FieldError for field.
func Field(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ID checks that v is a canonical UUID, the form every Rampart ID takes.
func ID(field, v string) error {
	if v == "" {
		return Field(field, "must not be empty")
	}
	if u, err := uuid.Parse(v); err != nil || u.String() != v {
		return Field(field, "must be a UUID, got %q", clip(v))
	}
	return nil
}

// Text checks that v is non-blank and at most limit characters long.
func Text(field, v string, limit int) error {
	if strings.TrimSpace(v) == "" {
		return Field(field, "must not be empty")
	}
	if n := utf8.RuneCountInString(v); n > limit {
		return Field(field, "must be at most %d characters, got %d", limit, n)
	}
	return nil
}

// PageSize checks an AIP-158 page size: 0 asks for the server's default and
// a size above the server's maximum is lowered to it, so only a negative
// size is invalid.
func PageSize(field string, v int32) error {
	if v < 0 {
		return Field(field, "must not be negative, got %d", v)
	}
	return nil
}

// First returns the first non-nil error, so a Validate method reads as a list
// of checks in field order.
func First(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// clip keeps echoed input short so a hostile value cannot flood the logs.
func clip(v string) string {
	const limit = 40
	if len(v) <= limit {
		return v
	}
	return v[:limit] + "…"
}
