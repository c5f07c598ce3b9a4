package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/rampart-go/rampart/cmd/devstack/demo"
	"github.com/rampart-go/rampart/internal/devstack"
)

// runCert is `devstack cert` (`make cert NAME=<identity> [ALLOW=user,order]`):
// against the agent of a running `make run` in mtls, it writes a
// certificate of the service identity NAME under <dir>/certs/NAME/,
// optionally writes the intentions that let NAME call the ALLOW services,
// and prints the grpcurl and ghz lines that work with it.
func runCert(args []string) error {
	fs := flag.NewFlagSet("devstack cert", flag.ContinueOnError)
	name := fs.String("name", "", "the service `identity` to write a certificate of (e.g. your name; not a service of the stack, or you would speak as it)")
	allow := fs.String("allow", "", "`services` (comma-separated) to allow the identity to call, by intention")
	workDir := fs.String("dir", ".devstack", "the work dir of the running stack")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		return fmt.Errorf("devstack cert: -name is required (make cert NAME=<identity>)")
	}
	addr, token, err := devstack.ReadAccess(*workDir)
	if err != nil {
		return err
	}
	cfg := api.DefaultNonPooledConfig()
	cfg.Address, cfg.Token, cfg.TokenFile = addr, token, ""
	client, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	files, err := devstack.WriteCert(ctx, client, *name, filepath.Join(*workDir, "certs"))
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s, %s (key) and %s (the CA roots): a certificate of spiffe://…/svc/%s\n", files.Cert, files.Key, files.CA, *name)

	var allowed []string
	for _, svc := range strings.Split(*allow, ",") {
		if svc = strings.TrimSpace(svc); svc != "" && !slices.Contains(allowed, svc) {
			if err = devstack.AllowIntention(ctx, client, *name, svc); err != nil {
				return err
			}
			allowed = append(allowed, svc)
		}
	}
	if len(allowed) > 0 {
		fmt.Printf("intentions: %s may call %s\n", *name, strings.Join(allowed, ", "))
	} else {
		fmt.Printf("no intention allows %s yet (ACLs deny by default): calls get PERMISSION_DENIED until one does\n", *name)
	}
	fmt.Println()
	services, err := devstack.Services(mustRoot())
	if err != nil {
		return err
	}
	for _, svc := range services {
		printCalls(ctx, client, files, svc)
	}
	tokenFile := filepath.Join(*workDir, devstack.TokenFile)
	fmt.Printf(`why -insecure: grpcurl and ghz verify a server certificate against a host name, and Consul's
certificates carry none (only the SPIFFE ID, a URI); neither tool can check the chain without
the name. The server still requires this certificate, verifies it against its roots and
authorizes %s by intention. ca.pem is for tools that verify SPIFFE IDs (go-spiffe, Envoy).

allow or deny by hand with the consul CLI (it reads the management token from the file):
  CONSUL_HTTP_ADDR=%s CONSUL_HTTP_TOKEN_FILE=%s bin/consul intention create -allow %s <service>
  CONSUL_HTTP_ADDR=%s CONSUL_HTTP_TOKEN_FILE=%s bin/consul intention delete %s <service>
or again: make cert NAME=%s ALLOW=<service>,...
`, *name, addr, tokenFile, *name, addr, tokenFile, *name, *name)
	return nil
}

// printCalls prints grpcurl and ghz lines that call svc at a passing
// instance, or says that none is passing.
func printCalls(ctx context.Context, client *api.Client, f devstack.CertFiles, svc string) {
	entries, _, err := client.Health().Service(svc, "", true, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil || len(entries) == 0 {
		fmt.Printf("%s: no passing instance (%v)\n\n", svc, err)
		return
	}
	e := entries[0].Service
	target := fmt.Sprintf("%s:%d", e.Address, e.Port)
	tls := fmt.Sprintf("-insecure -cert %s -key %s", f.Cert, f.Key)
	fmt.Printf("%s at %s:\n", svc, target)
	fmt.Printf("  grpcurl %s %s list        # reflection: the handshake only, no intention needed\n", tls, target)
	if method, body, ok := demo.ProbeCall(svc); ok {
		fmt.Printf("  grpcurl %s -d '%s' %s %s\n", tls, body, target, method)
		fmt.Printf("  ghz --skipTLS --cert %s --key %s --call %s -d '%s' -n 2000 -c 20 %s\n", f.Cert, f.Key, method, body, target)
	}
	fmt.Println()
}

// mustRoot is the repository root, or the working directory when it is
// not found (the services are then listed from there).
func mustRoot() string {
	root, err := devstack.RepoRoot()
	if err != nil {
		wd, _ := os.Getwd()
		return wd
	}
	return root
}
