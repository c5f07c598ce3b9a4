package retry_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/middleware/retry"
)

func TestConfigValidateNamesEachField(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*retry.Config)
		want string
	}{
		{"defaults", func(*retry.Config) {}, ""},
		{"no attempts", func(c *retry.Config) { c.MaxAttempts = 0 }, "max_attempts: must be between 1 and 5, got 0"},
		{"too many attempts", func(c *retry.Config) { c.MaxAttempts = 6 }, "max_attempts: must be between 1 and 5, got 6"},
		{"no initial backoff", func(c *retry.Config) { c.InitialBackoff = 0 }, "initial_backoff: must be > 0"},
		{"max below initial", func(c *retry.Config) { c.MaxBackoff = time.Millisecond }, "max_backoff: must be >= initial_backoff (50ms)"},
		{"shrinking", func(c *retry.Config) { c.Multiplier = 0.5 }, "multiplier: must be >= 1, got 0.5"},
		{"NaN", func(c *retry.Config) { c.Multiplier = math.NaN() }, "multiplier: must be a finite number, got NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := retry.DefaultConfig()
			tt.cfg(&c)
			checkValidate(t, c.Validate(), tt.want)
		})
	}
}

func TestBudgetConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  retry.BudgetConfig
		want string
	}{
		{retry.DefaultBudgetConfig(), ""},
		{retry.BudgetConfig{Ratio: 0, MinPerSecond: 0}, ""}, // a meaning: never retry
		{retry.BudgetConfig{Ratio: 1.5, MinPerSecond: 10}, "ratio: must be between 0 and 1, got 1.5"},
		{retry.BudgetConfig{Ratio: math.Inf(1), MinPerSecond: 10}, "ratio: must be a finite number, got +Inf"},
		{retry.BudgetConfig{Ratio: 0.2, MinPerSecond: -1}, "min_per_second: must be >= 0"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) { checkValidate(t, tt.cfg.Validate(), tt.want) })
	}
}

func checkValidate(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("Validate() = %v, want nil", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Validate() = %v, want %q", err, want)
	}
}
