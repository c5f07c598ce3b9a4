// Command user runs the user demo service: its gRPC API, registered in Consul.
package main

import (
	"fmt"
	"os"

	userdata "github.com/rampart-go/rampart/internal/data/user"
	"github.com/rampart-go/rampart/internal/server"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version string

func main() {
	if err := server.Main(os.Args, "configs/user.yaml", version, wireApp, server.WithMigrations(userdata.Schema)); err != nil {
		fmt.Fprintln(os.Stderr, "user:", err)
		os.Exit(1)
	}
}
