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

// Halt and Resume restart the same server: it refuses connections while
// it is down, and the data written before is there after, on the same
// address.
func TestPostgresHaltResume(t *testing.T) {
	ctx := devstacktest.Context(t, 2*time.Minute)
	pg, err := devstack.StartPostgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(); err != nil {
			t.Error(err)
		}
	})
	query := func(sql string) error {
		conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close(ctx) }()
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := query("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	addr := pg.Addr()
	if err := pg.Halt(); err != nil {
		t.Fatal(err)
	}
	if err := query("SELECT 1"); err == nil {
		t.Fatal("the server answered after Halt")
	}
	start := time.Now()
	if err := pg.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("resumed in %s", time.Since(start).Round(time.Millisecond))
	if pg.Addr() != addr {
		t.Fatalf("address after Resume %s, want %s", pg.Addr(), addr)
	}
	if err := query("DO $$ BEGIN IF (SELECT n FROM kept) <> 42 THEN RAISE 'lost'; END IF; END $$"); err != nil {
		t.Fatalf("data after the restart: %v", err)
	}
}
