package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/rampart-go/rampart/internal/middleware/faults"
)

// SetFaults replaces the faults of the running instance through its
// /debug/faults endpoint.
func (p *ServiceProc) SetFaults(ctx context.Context, fs map[string]faults.Fault) error {
	body, err := json.Marshal(fs)
	if err != nil {
		return err
	}
	return p.faultsRequest(ctx, http.MethodPut, body, nil)
}

// ClearFaults removes every fault of the instance.
func (p *ServiceProc) ClearFaults(ctx context.Context) error {
	return p.faultsRequest(ctx, http.MethodDelete, nil, nil)
}

// Faults returns the instance's faults and its per-method counts.
func (p *ServiceProc) Faults(ctx context.Context) (*faults.State, error) {
	var r faults.State
	if err := p.faultsRequest(ctx, http.MethodGet, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (p *ServiceProc) faultsRequest(ctx context.Context, method string, body []byte, out any) error {
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
