package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/data"
)

// Builder is a service's wire injector: it assembles an App from config.
type Builder func(*conf.Bootstrap) (*App, func(), error)

// MainOption adds to what Main can do.
type MainOption func(*mainOptions)

type mainOptions struct {
	schema *data.Schema
}

// WithMigrations gives Main the service's schema, for the `migrate`
// subcommand.
func WithMigrations(s data.Schema) MainOption {
	return func(o *mainOptions) { o.schema = &s }
}

// Main is the body of every service's main: flags, config, wiring, then Run
// until SIGINT or SIGTERM. version, stamped by the build, overrides
// service.version when set. A config error comes back naming the key, and
// the caller exits non-zero with it.
//
// `<svc> migrate up|down|status [-conf path]` runs one migration command of
// the schema WithMigrations gave against the database the config names
// (the same migrations every start applies up), prints what it did and
// returns, serving nothing.
func Main(args []string, defaultConfig, version string, build Builder, opts ...MainOption) error {
	var o mainOptions
	for _, opt := range opts {
		opt(&o)
	}
	migrate := ""
	if len(args) > 1 && args[1] == "migrate" {
		if len(args) < 3 {
			return errors.New("usage: migrate up|down|status [-conf path]")
		}
		migrate, args = args[2], append([]string{args[0]}, args[3:]...)
	}
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
	if migrate != "" {
		if o.schema == nil {
			return fmt.Errorf("%s has no migrations", c.Service.Name)
		}
		return data.Migrate(ctx, c.Data, *o.schema, migrate, os.Stdout)
	}
	Setup()
	app, cleanup, err := build(c)
	if err != nil {
		return fmt.Errorf("build %s: %w", c.Service.Name, err)
	}
	defer cleanup()
	return app.Run(ctx)
}
