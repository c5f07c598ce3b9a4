package faults_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/middleware/faults"
)

// do sends one request to the handler as if from remoteAddr; no traffic
// leaves the process.
func do(t *testing.T, h http.Handler, method, remoteAddr, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequestWithContext(testContext(t), method, "/debug/faults", strings.NewReader(body))
	req.RemoteAddr = remoteAddr
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func decodeState(t *testing.T, body string) faults.State {
	t.Helper()
	var s faults.State
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("decode state %q: %v", body, err)
	}
	return s
}

func TestHandlerRoundTrip(t *testing.T) {
	inj := mustNew(t, nil)
	h := inj.Handler()
	const local = "127.0.0.1:50000"

	code, body := do(t, h, http.MethodPut, local, `{
		"/user.v1.UserService/GetUser": {
			"delay": {"percent": 100, "duration": "1ms"},
			"abort": {"percent": 100, "code": "UNAVAILABLE"}
		}
	}`)
	if code != http.StatusOK {
		t.Fatalf("PUT = %d %s", code, body)
	}
	if s := decodeState(t, body); s.Faults[getUser].Delay == nil || s.Faults[getUser].Delay.Duration != time.Millisecond {
		t.Fatalf("PUT answered %s, want the new faults", body)
	}

	// The faults are live: a call is delayed and aborted.
	next := wrap(inj, &handler{})
	if _, err := next(call(testContext(t), getUser), nil); status.Code(err) != codes.Unavailable {
		t.Fatalf("after PUT, call err = %v, want Unavailable", err)
	}

	code, body = do(t, h, http.MethodGet, "[::1]:50000", "")
	if code != http.StatusOK {
		t.Fatalf("GET from ::1 = %d %s", code, body)
	}
	s := decodeState(t, body)
	if f := s.Faults[getUser]; f.Abort == nil || f.Abort.Code != "UNAVAILABLE" || f.Delay == nil || f.Delay.Percent != 100 {
		t.Fatalf("GET faults = %s", body)
	}
	if s.Seen[getUser] != 1 {
		t.Fatalf("GET seen = %v, want 1 for %s", s.Seen, getUser)
	}
	if inj := s.Injected[getUser]; inj.Delay != 1 || inj.Abort != 1 {
		t.Fatalf("GET injected = %+v, want 1 delay and 1 abort", inj)
	}
	// The duration travels as a string, as people write it.
	if !strings.Contains(body, `"duration":"1ms"`) {
		t.Fatalf("GET body %s lacks the duration as a string", body)
	}

	code, body = do(t, h, http.MethodDelete, local, "")
	if code != http.StatusOK || len(decodeState(t, body).Faults) != 0 {
		t.Fatalf("DELETE = %d %s, want no faults left", code, body)
	}
	if _, err := next(call(testContext(t), getUser), nil); err != nil {
		t.Fatalf("after DELETE, call err = %v", err)
	}
	// The counters survive a DELETE: they describe the process, not a fault.
	if got := inj.Seen(getUser); got != 2 {
		t.Fatalf("Seen = %d, want 2", got)
	}
}

func TestHandlerForbidsNonLoopback(t *testing.T) {
	inj := mustNew(t, map[string]faults.Fault{getUser: {Abort: &faults.Abort{Percent: 10, Code: "INTERNAL"}}})
	h := inj.Handler()
	for _, addr := range []string{"203.0.113.5:1234", "[2001:db8::1]:1234", "not-an-address", "localhost:1234"} {
		for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
			if code, body := do(t, h, method, addr, `{}`); code != http.StatusForbidden {
				t.Fatalf("%s from %s = %d %s, want 403", method, addr, code, body)
			}
		}
	}
	if len(inj.Faults()) != 1 {
		t.Fatalf("faults changed by forbidden requests: %v", inj.Faults())
	}
}

func TestHandlerRejectsBadInputNamingTheProblem(t *testing.T) {
	tests := []struct {
		name, body string
		naming     []string
	}{
		{"not JSON", `{"delay":`, []string{"body"}},
		{"not an object", `[1, 2]`, []string{"body"}},
		{"trailing data", `{} {}`, []string{"after"}},
		{"unknown field", `{"/user.v1.UserService/GetUser": {"dealy": {}}}`, []string{getUser, "dealy"}},
		{"unknown code", `{"/user.v1.UserService/GetUser": {"abort": {"percent": 5, "code": "NOPE"}}}`, []string{getUser, "abort.code"}},
		{"percent out of range", `{"/user.v1.UserService/GetUser": {"abort": {"percent": 120, "code": "INTERNAL"}}}`, []string{getUser, "abort.percent"}},
		{"duration as a number", `{"/user.v1.UserService/GetUser": {"delay": {"percent": 5, "duration": 2000}}}`, []string{getUser, "delay"}},
		{"bad duration", `{"/user.v1.UserService/GetUser": {"delay": {"percent": 5, "duration": "2 seconds"}}}`, []string{getUser, "delay.duration"}},
		{"bad method", `{"GetUser": {}}`, []string{"GetUser", "method"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj := mustNew(t, nil)
			code, body := do(t, inj.Handler(), http.MethodPut, "127.0.0.1:1", tt.body)
			if code != http.StatusBadRequest {
				t.Fatalf("PUT %s = %d %s, want 400", tt.body, code, body)
			}
			var e struct{ Error string }
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("error body %q is not JSON: %v", body, err)
			}
			for _, want := range tt.naming {
				if !strings.Contains(e.Error, want) {
					t.Fatalf("error %q should name %q", e.Error, want)
				}
			}
			if len(inj.Faults()) != 0 {
				t.Fatalf("a rejected PUT changed the faults: %v", inj.Faults())
			}
		})
	}
}

func TestHandlerMethodNotAllowed(t *testing.T) {
	code, _ := do(t, mustNew(t, nil).Handler(), http.MethodPost, "127.0.0.1:1", `{}`)
	if code != http.StatusMethodNotAllowed {
		t.Fatalf("POST = %d, want 405", code)
	}
}

// TestDelayJSONRoundTrip checks the wire form of Delay on its own, since
// config and tooling both depend on it.
func TestDelayJSONRoundTrip(t *testing.T) {
	in := faults.Fault{Delay: &faults.Delay{Percent: 12.5, Duration: 1500 * time.Millisecond}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"delay":{"percent":12.5,"duration":"1.5s"}}`; string(b) != want {
		t.Fatalf("marshal = %s, want %s", b, want)
	}
	var out faults.Fault
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if *out.Delay != *in.Delay || out.Abort != nil {
		t.Fatalf("round trip = %+v, want %+v", out.Delay, in.Delay)
	}
}
