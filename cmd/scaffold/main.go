// Command scaffold is what `make rename` and `make new-service` run:
//
//	scaffold rename -module github.com/acme/shop
//	scaffold new-service -name payment
//
// It works on the repository it is run in (found from the working
// directory) and changes nothing when it fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"time"

	"github.com/rampart-go/rampart/internal/scaffold"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "scaffold:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: scaffold rename -module <path> | scaffold new-service -name <name>")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	logf := func(format string, a ...any) { fmt.Printf(format+"\n", a...) }
	start := time.Now()
	var files []string
	switch cmd := args[0]; cmd {
	case "rename":
		fl := flag.NewFlagSet("rename", flag.ContinueOnError)
		module := fl.String("module", "", "the new module path, e.g. github.com/acme/shop")
		if err = fl.Parse(args[1:]); err != nil {
			return err
		}
		if *module == "" {
			return errors.New("rename: MODULE is empty: make rename MODULE=github.com/acme/shop")
		}
		files, err = scaffold.Rename(ctx, root, *module, scaffold.WithLog(logf))
	case "new-service":
		fl := flag.NewFlagSet("new-service", flag.ContinueOnError)
		name := fl.String("name", "", "the service name, e.g. payment")
		if err = fl.Parse(args[1:]); err != nil {
			return err
		}
		if *name == "" {
			return errors.New("new-service: NAME is empty: make new-service NAME=payment")
		}
		files, err = scaffold.NewService(ctx, root, *name, scaffold.WithLog(logf))
		if err == nil {
			sort.Strings(files)
			for _, f := range files {
				fmt.Println("  " + f)
			}
			defer fmt.Printf("next: `make run` starts %s with the others; docs/adding-a-service.md shows where its logic goes\n", *name)
		}
	default:
		return fmt.Errorf("unknown command %q: want rename or new-service", cmd)
	}
	if err != nil {
		return err
	}
	fmt.Printf("done in %s, %d files\n", time.Since(start).Round(100*time.Millisecond), len(files))
	return nil
}

// repoRoot is the nearest directory at or above the working directory with
// a go.mod; the Makefile runs this from the repository root.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory")
		}
		dir = parent
	}
}
