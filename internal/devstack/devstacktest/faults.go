package devstacktest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/middleware/faults"
)

// The fault helpers return errors rather than failing the test: the
// suites call them from load goroutines and polling loops, where
// tb.Fatal must not be called.

// SetFaults replaces the faults of the running instance p through its
// /debug/faults endpoint.
func SetFaults(ctx context.Context, p *devstack.ServiceProc, fs map[string]faults.Fault) error {
	body, err := json.Marshal(fs)
	if err != nil {
		return fmt.Errorf("encode faults: %w", err)
	}
	return faultsRequest(ctx, p, http.MethodPut, body, nil)
}

// ClearFaults removes every fault of the instance p.
func ClearFaults(ctx context.Context, p *devstack.ServiceProc) error {
	return faultsRequest(ctx, p, http.MethodDelete, nil, nil)
}

// Faults returns the faults of the instance p and its per-method counts.
func Faults(ctx context.Context, p *devstack.ServiceProc) (*faults.State, error) {
	var r faults.State
	if err := faultsRequest(ctx, p, http.MethodGet, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func faultsRequest(ctx context.Context, p *devstack.ServiceProc, method string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+p.HTTPAddr+"/debug/faults", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s /debug/faults on %s: %w", method, p.HTTPAddr, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s /debug/faults on %s: %s: %s", method, p.HTTPAddr, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode /debug/faults: %w", err)
	}
	return nil
}
