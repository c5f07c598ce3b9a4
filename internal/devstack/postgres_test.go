package devstack_test

import (
	"os"
	"os/exec"
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

// The options for a server on a host of its own: the process is started
// through the starter, listens on the address and fixed port given, and
// lets the trusted network in (a pg_hba.conf line); a network that is not
// one is refused before anything starts.
func TestStartPostgresListen(t *testing.T) {
	ctx := devstacktest.Context(t, 2*time.Minute)
	port := devstacktest.Port(t)
	started := 0
	pg, err := devstack.StartPostgres(ctx,
		devstack.WithPostgresListen("127.0.0.1", port),
		devstack.WithPostgresTrustNet("10.231.7.0/24"),
		devstack.WithPostgresStarter(func(cmd *exec.Cmd) error { started++; return cmd.Start() }),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	if want := "127.0.0.1:" + strconv.Itoa(port); pg.Addr() != want {
		t.Errorf("Addr() = %s, want %s", pg.Addr(), want)
	}
	if started != 1 {
		t.Errorf("starter called %d times, want 1", started)
	}
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var rules int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_hba_file_rules WHERE address = '10.231.7.0' AND netmask = '255.255.255.0' AND auth_method = 'trust'`).Scan(&rules)
	if err != nil || rules != 1 {
		t.Errorf("pg_hba rules for 10.231.7.0/24: %d, %v; want 1", rules, err)
	}

	if _, err := devstack.StartPostgres(ctx, devstack.WithPostgresTrustNet("10.231.7.0/33")); err == nil {
		t.Error("StartPostgres with trusted network 10.231.7.0/33: no error")
	}
	if _, err := devstack.StartPostgres(ctx, devstack.WithPostgresListen("db.example", 0)); err == nil {
		t.Error("StartPostgres listening on db.example: no error")
	}
}
