package data_test

import (
	"testing"

	"github.com/rampart-go/rampart/internal/leakcheck"
)

// Opening a PostgreSQL pool starts its health-check goroutine: the cleanup
// must end it.
func TestMain(m *testing.M) { leakcheck.Main(m) }
