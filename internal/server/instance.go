package server

import (
	"io"
	"os"
	"sync/atomic"

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
func NewInstance(s conf.Service) Instance {
	return Instance{
		ID:      s.Name + "-" + uuid.NewString()[:8],
		Name:    s.Name,
		Version: s.Version,
	}
}

// NewLogger returns the process logger: every line carries the service
// name and instance ID, and is JSON when log.format is json. Kratos' own
// lines ("[gRPC] server listening on", "[resolver] …") go through it too,
// once Setup has made Kratos' global logger forward here.
func NewLogger(c conf.Log, inst Instance) log.Logger {
	return newLogger(os.Stderr, c, inst)
}

func newLogger(w io.Writer, c conf.Log, inst Instance) log.Logger {
	var base log.Logger
	if c.Format == "json" {
		base = newJSONLogger(w)
	} else {
		base = log.NewStdLogger(w)
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
	filtered := log.NewFilter(logger, log.FilterLevel(log.ParseLevel(c.Level)))
	kratosLogger.set(filtered)
	return filtered
}

// kratosLogger is what Setup makes Kratos' global logger: it forwards to
// the logger NewLogger built last (one per process, except in tests). Until
// NewLogger runs it forwards to Kratos' default.
var kratosLogger = newForwarder(log.GetLogger())

// forwarder is a logger whose target may change while others log through it.
type forwarder struct {
	target atomic.Pointer[log.Logger]
}

func newForwarder(target log.Logger) *forwarder {
	f := &forwarder{}
	f.set(target)
	return f
}

func (f *forwarder) set(target log.Logger) { f.target.Store(&target) }

func (f *forwarder) Log(level log.Level, keyvals ...any) error {
	return (*f.target.Load()).Log(level, keyvals...)
}
