package server_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/rampart-go/rampart/internal/conf"
	orderdata "github.com/rampart-go/rampart/internal/data/order"
	"github.com/rampart-go/rampart/internal/server"
)

// `<svc> migrate <command> -conf <file>` runs the command against the
// configured database and serves nothing; a missing or unknown command, or
// a service without migrations, is an error.
func TestMainMigrate(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "order.db")
	cfg := filepath.Join(dir, "order.yaml")
	if err := os.WriteFile(cfg, []byte("service: {name: order}\ndata: {driver: sqlite, sqlite: {path: "+db+"}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	build := func(*conf.Bootstrap) (*server.App, func(), error) {
		t.Fatal("migrate built the service")
		return nil, nil, nil
	}
	withSchema := server.WithMigrations(orderdata.Schema)
	if err := server.Main([]string{"order", "migrate", "up", "-conf", cfg}, "", "", build, withSchema); err != nil {
		t.Fatalf("migrate up: %v", err)
	}
	sdb, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sdb.Close() }()
	var n int
	if err := sdb.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM orders`).Scan(&n); err != nil {
		t.Fatalf("no orders table after migrate up: %v", err)
	}
	for _, tt := range []struct {
		args []string
		opts []server.MainOption
		want string
	}{
		{[]string{"order", "migrate"}, []server.MainOption{withSchema}, "usage: migrate up|down|status"},
		{[]string{"order", "migrate", "sideways", "-conf", cfg}, []server.MainOption{withSchema}, `unknown command "sideways"`},
		{[]string{"order", "migrate", "status", "-conf", cfg}, nil, "order has no migrations"},
	} {
		err := server.Main(tt.args, "", "", build, tt.opts...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Main(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}
