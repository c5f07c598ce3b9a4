package server

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/go-kratos/kratos/v2/log"
)

// jsonLogger writes one JSON object per line, for log shippers that parse
// structured logs.
type jsonLogger struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func newJSONLogger(w io.Writer) log.Logger {
	return &jsonLogger{enc: json.NewEncoder(w)}
}

func (l *jsonLogger) Log(level log.Level, keyvals ...any) error {
	m := make(map[string]any, len(keyvals)/2+1)
	m["level"] = level.String()
	for i := 0; i+1 < len(keyvals); i += 2 {
		key := fmt.Sprint(keyvals[i])
		if err, ok := keyvals[i+1].(error); ok {
			m[key] = err.Error()
			continue
		}
		m[key] = keyvals[i+1]
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.enc.Encode(m)
}
