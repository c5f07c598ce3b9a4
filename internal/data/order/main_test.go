package order_test

import (
	"testing"

	"github.com/rampart-go/rampart/internal/leakcheck"
)

// The PostgreSQL store starts a sweep goroutine and a pool: Close and the
// pool's cleanup must end them.
func TestMain(m *testing.M) { leakcheck.Main(m) }
