package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// FaultReport is what an instance's GET /debug/faults answers.
type FaultReport struct {
	Faults   map[string]json.RawMessage  `json:"faults"`
	Seen     map[string]int64            `json:"seen"`
	Injected map[string]map[string]int64 `json:"injected"`
}

// SetFaults replaces the faults of the instance (method -> fault JSON, e.g.
// {"abort": {"percent": 30, "code": "UNAVAILABLE"}}).
func (p *ServiceProc) SetFaults(ctx context.Context, faults map[string]any) error {
	body, err := json.Marshal(faults)
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
func (p *ServiceProc) Faults(ctx context.Context) (*FaultReport, error) {
	var r FaultReport
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
