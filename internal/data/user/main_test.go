package user_test

import (
	"testing"

	"github.com/rampart-go/rampart/internal/leakcheck"
)

// The PostgreSQL store's pool starts goroutines: its cleanup must end them.
func TestMain(m *testing.M) { leakcheck.Main(m) }
