// Command order runs the order demo service: its gRPC API, registered in Consul.
package main

import (
	"fmt"
	"os"

	orderdata "github.com/rampart-go/rampart/internal/data/order"
	"github.com/rampart-go/rampart/internal/server"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version string

func main() {
	if err := server.Main(os.Args, "configs/order.yaml", version, wireApp, server.WithMigrations(orderdata.Schema)); err != nil {
		fmt.Fprintln(os.Stderr, "order:", err)
		os.Exit(1)
	}
}
