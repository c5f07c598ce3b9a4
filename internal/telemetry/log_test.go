package telemetry_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/go-kratos/kratos/v2/log"

	"github.com/rampart-go/rampart/internal/telemetry"
)

// A line logged with a request's context carries its trace and span IDs; a
// line logged without one carries the keys, empty.
func TestLoggerAddsTraceIDs(t *testing.T) {
	clearOTelEnv(t)
	tel, _ := newTelemetry(t, telemetry.Config{})
	var buf bytes.Buffer
	// The service's logger shape: fields, then a level filter on top.
	logger := log.NewFilter(telemetry.Logger(log.With(log.NewStdLogger(&buf), "service", "user")), log.FilterLevel(log.LevelInfo))

	ctx, span := tel.TracerProvider().Tracer("test").Start(testCtx(t), "handler")
	log.NewHelper(logger).WithContext(ctx).Info("inside")
	span.End()
	log.NewHelper(logger).Info("outside")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	sc := span.SpanContext()
	if want := "trace_id=" + sc.TraceID().String() + " span_id=" + sc.SpanID().String(); !strings.Contains(lines[0], want) {
		t.Errorf("line inside the span: %q, want it to contain %q", lines[0], want)
	}
	if want := "trace_id= span_id= "; !strings.Contains(lines[1], want) {
		t.Errorf("line outside any span: %q, want it to contain %q", lines[1], want)
	}
}
