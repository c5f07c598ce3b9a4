package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rampart-go/rampart/internal/devstack"
)

// readyFile is written into the work directory once the Nomad stack is up
// and the demo has run; `make nomad-up` waits for it, then leaves this
// process running in the background until `make nomad-down` signals it.
const readyFile = "ready"

// runNomad starts Consul and Nomad dev agents, submits every job under
// deploy/nomad, runs the demo through the instances Nomad placed, and keeps
// everything up until ctx ends; then it stops the jobs and both agents.
// security is -security ("": each job as its config says); with a job in
// mtls the agent runs with ACLs on, each job with a token of its own, and
// the demo calls with a certificate of devstack.ClientIdentity.
func runNomad(ctx context.Context, root, dir, security string) error {
	_ = os.Remove(filepath.Join(dir, readyFile))
	start := time.Now()
	fmt.Printf("starting Consul and Nomad dev agents and the jobs of deploy/nomad (work dir %s)...\n", dir)
	startCtx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	stack, err := devstack.StartNomadStack(startCtx, devstack.NomadStackConfig{RepoRoot: root, WorkDir: dir, Security: security})
	cancel()
	if err != nil {
		return err
	}
	mtlsMode := stack.MTLS()
	printMode(mtlsMode)
	defer func() {
		devstack.RemoveAccess(dir)
		fmt.Println("stopping: the jobs (each instance leaves Consul, then drains), then Nomad, then Consul...")
		if stopErr := stack.Stop(); stopErr != nil {
			fmt.Fprintln(os.Stderr, "devstack: stop:", stopErr)
			return
		}
		_ = os.Remove(filepath.Join(dir, readyFile))
		fmt.Println("stopped, nothing left running")
	}()
	fmt.Printf("2 allocations of each job passing in Consul after %s\n", time.Since(start).Round(100*time.Millisecond))

	client, err := stack.ConsulClient()
	if err != nil {
		return err
	}
	if err = runDemo(ctx, client, mtlsMode); err != nil {
		return err
	}

	fmt.Printf("\nNomad UI:  %s\nConsul UI: %s\n", stack.Nomad.UIURL(), stack.Consul.UIURL())
	fmt.Printf("NOMAD_ADDR=%s CONSUL_HTTP_ADDR=%s\n", stack.Nomad.HTTPAddr(), stack.Consul.Addr())
	if mtlsMode {
		// The management token goes to a file, never to the output.
		if err := stack.WriteAccess(dir); err != nil {
			return err
		}
		tokenFile := filepath.Join(dir, devstack.TokenFile)
		fmt.Println("mtls: every job runs with a Consul token of its own (job variable consul_token), every gRPC port takes only mutual TLS, and intentions decide who calls whom.")
		fmt.Printf("management token in %s: CONSUL_HTTP_ADDR=%s CONSUL_HTTP_TOKEN_FILE=%s bin/consul intention list\n", tokenFile, stack.Consul.Addr(), tokenFile)
		fmt.Printf("to call a service from the shell: make cert NAME=<you> ALLOW=user,order DIR=%s  (prints the grpcurl and ghz lines)\n", dir)
	}
	if err := os.WriteFile(filepath.Join(dir, readyFile), []byte(stack.Nomad.HTTPAddr()+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Println("running; `make nomad-down` (or Ctrl-C) stops it")
	<-ctx.Done()
	return nil
}
