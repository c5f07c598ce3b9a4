package devstack_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// The launcher starts a server that answers queries as the superuser
// postgres, and Stop leaves no process and no directory behind.
func TestStartPostgres(t *testing.T) {
	ctx := devstacktest.Context(t, 2*time.Minute)
	start := time.Now()
	pg, err := devstack.StartPostgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initdb and start took %s", time.Since(start).Round(time.Millisecond))
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		_ = pg.Stop()
		t.Fatal(err)
	}
	var n int
	err = conn.QueryRow(ctx, "SELECT 40 + 2").Scan(&n)
	_ = conn.Close(ctx)
	if err != nil || n != 42 {
		_ = pg.Stop()
		t.Fatalf("SELECT 40 + 2 = %d, %v", n, err)
	}
	pidFile := filepath.Join(filepath.Dir(pg.LogPath()), "data", "postmaster.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		_ = pg.Stop()
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("postmaster %d still running after Stop", pid)
	}
	if _, err := os.Stat(filepath.Dir(pidFile)); !os.IsNotExist(err) {
		t.Fatalf("cluster directory left behind: %v", err)
	}
}
