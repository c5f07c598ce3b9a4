package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/go-kratos/kratos/v2/log"

	"github.com/rampart-go/rampart/internal/conf"
)

// syncBuffer is a log destination several goroutines may write to.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// restoreKratosLogger puts Kratos' global logger back where it forwarded
// before the test.
func restoreKratosLogger(t *testing.T) {
	Setup() // Kratos' global forwards to kratosLogger from here on
	prev := *kratosLogger.target.Load()
	t.Cleanup(func() { kratosLogger.set(prev) })
}

// TestKratosLinesHaveTheProcessFormat logs through Kratos' global logger,
// as its gRPC server and resolver do, and expects the process's JSON line
// with service and instance.
func TestKratosLinesHaveTheProcessFormat(t *testing.T) {
	restoreKratosLogger(t)
	c := conf.Default()
	c.Service.Name = "user"
	c.Log.Format = "json"
	inst := NewInstance(c.Service)
	var out syncBuffer
	newLogger(&out, c.Log, inst)

	log.Infof("[gRPC] server listening on: %s", "127.0.0.1:9000")

	var found bool
	for raw := range strings.Lines(out.String()) {
		var line map[string]any
		if err := json.Unmarshal([]byte(raw), &line); err != nil {
			t.Fatalf("not a JSON line: %q: %v", raw, err)
		}
		if line["msg"] != "[gRPC] server listening on: 127.0.0.1:9000" {
			continue
		}
		found = true
		if line["service"] != "user" || line["instance"] != inst.ID || line["level"] != "INFO" {
			t.Errorf("Kratos line %v: want service user, instance %s, level INFO", line, inst.ID)
		}
	}
	if !found {
		t.Fatalf("Kratos' line did not reach the process logger; got %q", out.String())
	}
}

// TestNewLoggerWhileKratosLogs builds loggers while another goroutine logs
// through Kratos' global logger, as several Apps in one test process do;
// run with -race, it catches a global that is swapped unsafely.
func TestNewLoggerWhileKratosLogs(t *testing.T) {
	restoreKratosLogger(t)
	c := conf.Default()
	c.Service.Name = "user"
	var out syncBuffer
	newLogger(&out, c.Log, NewInstance(c.Service))

	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			log.Info("[resolver] update")
		}
	}()
	for range 10 {
		newLogger(&out, c.Log, NewInstance(c.Service))
	}
	<-done
	if n := strings.Count(out.String(), "[resolver] update"); n != 100 {
		t.Fatalf("%d of 100 Kratos lines reached the process logger", n)
	}
}
