package faults

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// maxBody bounds a PUT body: a fault table is a few hundred bytes, and the
// handler must not buffer whatever a misbehaving client sends.
const maxBody = 1 << 20

// State is what GET /debug/faults returns (and PUT and DELETE, after the
// change): the faults in force and what the injector has counted since the
// process started.
type State struct {
	Faults map[string]Fault `json:"faults"`
	// Seen is the number of requests that reached the injector, per method.
	Seen map[string]int64 `json:"seen"`
	// Injected counts the faults applied, per method.
	Injected map[string]Injected `json:"injected"`
}

// Injected counts the faults applied to one method.
type Injected struct {
	Delay int64 `json:"delay"`
	Abort int64 `json:"abort"`
	// Interrupted counts delays the caller's context cut short: proof that
	// the caller's deadline or cancellation reached this server.
	Interrupted int64 `json:"interrupted"`
}

// State returns the faults in force and the counters.
func (i *Injector) State() State {
	s := State{Faults: i.Faults(), Seen: map[string]int64{}, Injected: map[string]Injected{}}
	for m, st := range *i.stats.Load() {
		s.Seen[m] = st.seen.Load()
		if inj := (Injected{Delay: st.delays.Load(), Abort: st.aborts.Load(), Interrupted: st.interrupted.Load()}); inj != (Injected{}) {
			s.Injected[m] = inj
		}
	}
	return s
}

// Handler serves /debug/faults:
//
//	GET     the State as JSON
//	PUT     replace all faults with the body, a JSON object {method: Fault}
//	DELETE  remove all faults
//
// PUT and DELETE answer with the new State. A caller whose address is not
// loopback gets 403: this is a switch to break the service, so it must not
// be reachable from the network even when the HTTP port is. Only PUT and
// DELETE change anything, and a browser must ask a CORS preflight before
// sending either to another origin, which this handler never grants, so a
// web page cannot drive it from a developer's machine either.
func (i *Injector) Handler() http.Handler {
	return http.HandlerFunc(i.serveHTTP)
}

func (i *Injector) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !isLoopback(r.RemoteAddr) {
		writeError(w, http.StatusForbidden, "fault injection is only served to loopback callers")
		return
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPut:
		faults, err := decodeFaults(http.MaxBytesReader(w, r.Body, maxBody))
		if err == nil {
			err = i.Set(faults)
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	case http.MethodDelete:
		i.Clear()
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, r.Method+" not allowed; use GET, PUT or DELETE")
		return
	}
	writeJSON(w, http.StatusOK, i.State())
}

// isLoopback reports whether remoteAddr ("host:port") is a loopback IP,
// IPv4-mapped IPv6 included. Anything unparsable is refused.
func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// decodeFaults reads {method: Fault}, decoding each fault on its own so an
// error names the method, and refusing unknown fields so a typo ("dealy")
// is an error rather than a fault silently not injected.
func decodeFaults(body io.Reader) (map[string]Fault, error) {
	dec := json.NewDecoder(body)
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("body: want a JSON object {method: fault}: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("body: data after the JSON object")
	}
	faults := make(map[string]Fault, len(raw))
	for m, msg := range raw {
		var f Fault
		if err := strictUnmarshal(msg, &f); err != nil {
			return nil, fmt.Errorf("fault %q: %w", m, err)
		}
		faults[m] = f
	}
	return faults, nil
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// delayJSON is Delay on the wire, with the duration as a string ("2s")
// rather than encoding/json's nanoseconds, which nobody types correctly.
type delayJSON struct {
	Percent  float64 `json:"percent"`
	Duration string  `json:"duration"`
}

// MarshalJSON writes Duration as a Go duration string.
func (d Delay) MarshalJSON() ([]byte, error) {
	return json.Marshal(delayJSON{Percent: d.Percent, Duration: d.Duration.String()})
}

// UnmarshalJSON reads Duration as a Go duration string ("2s", "150ms").
func (d *Delay) UnmarshalJSON(data []byte) error {
	var j delayJSON
	if err := strictUnmarshal(data, &j); err != nil {
		return fmt.Errorf("delay: %w", err)
	}
	dur, err := time.ParseDuration(j.Duration)
	if err != nil {
		return fmt.Errorf(`delay.duration: %q is not a duration such as "2s"`, j.Duration)
	}
	*d = Delay{Percent: j.Percent, Duration: dur}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	// The status line is sent; a failed write means the client went away.
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
