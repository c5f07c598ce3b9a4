package server

import (
	"os"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/google/uuid"

	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// Instance identifies this process among the instances of its service.
type Instance struct {
	ID      string
	Name    string
	Version string
}

// NewInstance gives the process an ID that is unique even when two
// instances share a host and a port number across restarts, so Consul never
// confuses a new instance with the one it replaced.
func NewInstance(c *conf.Bootstrap) Instance {
	return Instance{
		ID:      c.Service.Name + "-" + uuid.NewString()[:8],
		Name:    c.Service.Name,
		Version: c.Service.Version,
	}
}

// NewLogger returns the process logger: every line carries the service
// name and instance ID, and is JSON when log.format is json.
func NewLogger(c *conf.Bootstrap, inst Instance) log.Logger {
	var base log.Logger
	if c.Log.Format == "json" {
		base = newJSONLogger(os.Stderr)
	} else {
		base = log.NewStdLogger(os.Stderr)
	}
	// trace_id and span_id are empty outside a request and the ids of the
	// current span inside one, so a log line can be found from its trace.
	logger := log.With(base,
		"ts", log.DefaultTimestamp,
		"service", inst.Name,
		"instance", inst.ID,
		"trace_id", telemetry.TraceID(),
		"span_id", telemetry.SpanID(),
	)
	return log.NewFilter(logger, log.FilterLevel(log.ParseLevel(c.Log.Level)))
}
