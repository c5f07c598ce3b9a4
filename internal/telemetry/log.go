package telemetry

import (
	"context"

	"github.com/go-kratos/kratos/v2/log"
	"go.opentelemetry.io/otel/trace"
)

// Log keys of the trace and span IDs, the names the issue and most log
// backends use to link a line to its trace.
const (
	LogKeyTraceID = "trace_id"
	LogKeySpanID  = "span_id"
)

// TraceID returns a Kratos log valuer for the trace ID of the span in the
// log call's context (see log.WithContext and log.Helper.WithContext), or
// "" when there is none, so lines logged outside a request keep the same
// keys. It works with unsampled spans too: their IDs are still propagated.
func TraceID() log.Valuer {
	return func(ctx context.Context) any {
		if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
			return sc.TraceID().String()
		}
		return ""
	}
}

// SpanID returns a Kratos log valuer for the span ID of the span in the log
// call's context, or "" when there is none.
func SpanID() log.Valuer {
	return func(ctx context.Context) any {
		if sc := trace.SpanContextFromContext(ctx); sc.HasSpanID() {
			return sc.SpanID().String()
		}
		return ""
	}
}

// Logger returns base with trace_id and span_id on every line, filled in
// when the line is logged with a context carrying a span (Kratos' logging
// middleware does that for every call). It may go inside or outside a
// log.NewFilter: a Filter hands the context on to the logger it wraps.
func Logger(base log.Logger) log.Logger {
	return log.With(base, LogKeyTraceID, TraceID(), LogKeySpanID, SpanID())
}
