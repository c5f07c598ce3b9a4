package server

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/rampart-go/rampart/internal/middleware/faults"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// Probes holds what the HTTP probes report. Ready is false until the
// instance serves and again from the first moment of shutdown, so a load
// balancer that reads /readyz stops sending before the listener closes.
type Probes struct {
	ready atomic.Bool
}

// NewProbes returns probes that report not ready.
func NewProbes() *Probes { return &Probes{} }

// SetReady changes what /readyz answers.
func (p *Probes) SetReady(ready bool) { p.ready.Store(ready) }

// NewHTTPServer returns the side-port server: /healthz answers 200 while the
// process runs, /readyz 200 only while it takes calls, /metrics serves
// Prometheus, and /debug/faults (loopback callers only) changes injected
// faults when server.faults.endpoint is on.
func NewHTTPServer(f faults.Config, p *Probes, inj *faults.Injector, tel *telemetry.Telemetry) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", tel.MetricsHandler())
	if f.Endpoint {
		mux.Handle("/debug/faults", inj.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !p.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
}
