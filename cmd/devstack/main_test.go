package main

import "testing"

// -security takes plaintext, mtls or nothing (each service as its config
// says), with -nomad as without it.
func TestCheckFlags(t *testing.T) {
	for _, tt := range []struct {
		driver, security string
		ok               bool
	}{
		{"", "", true},
		{"postgres", "mtls", true},
		{"sqlite", "plaintext", true},
		{"mysql", "", false},
		{"", "tls", false},
	} {
		if err := checkFlags(tt.driver, tt.security); (err == nil) != tt.ok {
			t.Errorf("checkFlags(%q, %q) = %v, want ok %v", tt.driver, tt.security, err, tt.ok)
		}
	}
}
