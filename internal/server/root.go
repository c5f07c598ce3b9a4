package server

import (
	"sync"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/selector"
	"github.com/go-kratos/kratos/v2/selector/p2c"
	"go.opentelemetry.io/otel"

	"github.com/rampart-go/rampart/internal/telemetry"
)

// This file is the composition root's hold on process-wide state: Kratos'
// balancer and logger, and the OpenTelemetry globals. Nothing else in the
// tree sets them (a forbidigo rule in .golangci.yml checks it), so what a
// process runs with is decided here, at start, not by whichever package
// happened to be imported or dialled first.

var setupOnce sync.Once

// Setup makes the process-wide decisions every Rampart process shares, once;
// Main calls it before wiring, and a tool or test that dials a service
// through the client chain calls it before its first dial.
//
//   - Kratos' gRPC balancer becomes P2C over EWMA latency and success
//     instead of weighted round robin: round robin keeps sending a share of
//     calls to a slow or failing instance, P2C steers away from it within a
//     few calls. Kratos reads the global selector when a connection builds
//     its picker, so it must be set before the first dial.
//   - Kratos' global logger becomes a forwarder to the logger NewLogger
//     builds last, so Kratos' own lines ("[gRPC] server listening on") carry
//     the service and instance. Kratos reads its global without a lock, so
//     it is set once, before anything can log, and only the forwarder's
//     target changes afterwards.
func Setup() {
	setupOnce.Do(func() {
		selector.SetGlobalSelector(p2c.NewBuilder())
		log.SetLogger(kratosLogger)
	})
}

// installTelemetry makes tel's providers and propagator the OpenTelemetry
// globals, for instrumentation that reads them (the middleware gets the
// meter provider passed instead), and routes OpenTelemetry's internal errors
// (a failed export, an instrument the SDK refused) to logger at warn level,
// so they carry the service and instance like every other line.
func installTelemetry(tel *telemetry.Telemetry, logger log.Logger) {
	helper := log.NewHelper(logger)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		helper.Warnf("opentelemetry: %v", err)
	}))
	otel.SetTracerProvider(tel.TracerProvider())
	otel.SetMeterProvider(tel.MeterProvider())
	otel.SetTextMapPropagator(tel.Propagator())
}
