package server

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rampart-go/rampart/internal/conf"
)

// Builder is a service's wire injector: it assembles an App from config.
type Builder func(*conf.Bootstrap) (*App, func(), error)

// Main is the body of every service's main: flags, config, wiring, then Run
// until SIGINT or SIGTERM. version, stamped by the build, overrides
// service.version when set. A config error comes back naming the key, and
// the caller exits non-zero with it.
func Main(args []string, defaultConfig, version string, build Builder) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	path := fs.String("conf", defaultConfig, "config file `path`")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	c, err := conf.Load(*path)
	if err != nil {
		return fmt.Errorf("%s: %w", *path, err)
	}
	if version != "" {
		c.Service.Version = version
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	Setup()
	app, cleanup, err := build(c)
	if err != nil {
		return fmt.Errorf("build %s: %w", c.Service.Name, err)
	}
	defer cleanup()
	return app.Run(ctx)
}
