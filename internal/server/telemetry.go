package server

import (
	"context"
	"fmt"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"go.opentelemetry.io/otel/metric"

	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// flushTimeout bounds the final export at shutdown: an unreachable
// collector must not hold the process past its stop.
const flushTimeout = 5 * time.Second

// NewTelemetry builds the tracer and meter providers for this instance,
// reading the OTEL_* variables from env, the environment the config was
// parsed with, and installs them as the OpenTelemetry globals (root.go).
// The cleanup flushes pending spans; wire runs it after App.Run has stopped
// the servers, so the last calls' spans are exported too.
func NewTelemetry(c telemetry.Config, env conf.Lookup, inst Instance, logger log.Logger) (*telemetry.Telemetry, func(), error) {
	tel, err := telemetry.New(context.Background(), c, telemetry.ResourceInfo{
		ServiceName:    inst.Name,
		ServiceVersion: inst.Version,
		InstanceID:     inst.ID,
	}, telemetry.WithLookup(env))
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: %w", err)
	}
	installTelemetry(tel, logger)
	log.NewHelper(logger).Infof("telemetry: %s", tel.Settings())
	return tel, func() {
		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			log.NewHelper(logger).Errorf("telemetry shutdown: %v", err)
		}
	}, nil
}

// NewMeterProvider is the meter provider the middleware records through,
// passed to each so that none depends on the globals being set first.
func NewMeterProvider(tel *telemetry.Telemetry) metric.MeterProvider {
	return tel.MeterProvider()
}
