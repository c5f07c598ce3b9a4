// Command devstack is what `make run` runs: a Consul agent, two instances of
// each service (every cmd/<name> with a wire injector, unless -services
// says otherwise), one demo flow across user and order, then it waits for
// Ctrl-C and stops everything it started. With -nomad (what `make nomad-up` runs) the
// instances are Nomad jobs on a Nomad dev agent instead. With -data postgres
// (`make run DATA=postgres`) it first starts a throwaway PostgreSQL server
// (devstack.StartPostgres: its log in the work dir, its cluster in a temp
// dir removed at exit) and runs every instance with data.driver postgres
// against it, through RAMPART_DATA_DRIVER and DATABASE_URL. In mtls mode
// (what the shipped configs say; -security forces one mode on every
// instance, `make run SECURITY=plaintext`) the agent runs with ACLs on,
// every instance with a token of its own, and the demo calls with a
// certificate of devstack.ClientIdentity; `devstack cert` (`make cert`)
// then writes a client certificate for the shell (cert.go). Without
// -security each service runs the mode its config sets (security.mode),
// and the stack is secured as above if any runs mtls. -nomad does the same
// with the Nomad jobs.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/hashicorp/consul/api"

	"github.com/rampart-go/rampart/cmd/devstack/demo"
	rconsul "github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/telemetry"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) > 1 && os.Args[1] == "cert" {
		return runCert(os.Args[2:])
	}
	services := flag.String("services", "", "services to start as `name=count,...`; empty means two instances of every service")
	workDir := flag.String("dir", ".devstack", "where binaries and logs are written")
	onNomad := flag.Bool("nomad", false, "run the services as Nomad jobs (deploy/nomad) on a Nomad dev agent instead of as plain processes")
	driver := flag.String("data", "", "`driver` for every instance: empty keeps the configs' (sqlite); postgres starts a local PostgreSQL server for them")
	security := flag.String("security", "", "`mode` of every instance: empty keeps the configs' (mtls), plaintext, or mtls (an agent with ACLs on, a token per service, intentions from the configs' clients); with -nomad the same for the jobs")
	flag.Parse()
	err := checkFlags(*driver, *security)
	if err != nil {
		return err
	}
	root, err := devstack.RepoRoot()
	if err != nil {
		return err
	}
	if *services == "" {
		if *services, err = everyServiceTwice(root); err != nil {
			return err
		}
	}
	counts, err := parseServices(*services)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(*workDir)
	if err != nil {
		return err
	}
	if err = os.MkdirAll(dir, 0o755); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *onNomad {
		return runNomad(ctx, root, dir, *security)
	}

	start := time.Now()
	env, stopData, err := startData(ctx, *driver, dir)
	if err != nil {
		return err
	}
	defer stopData()
	fmt.Printf("starting Consul and %s (logs in %s)...\n", *services, dir)
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	stack, err := devstack.StartStack(startCtx, devstack.StackConfig{RepoRoot: root, Services: counts, WorkDir: dir, Env: env, Security: *security})
	cancel()
	if err != nil {
		return err
	}
	printMode(stack.MTLS())
	if err = stack.WriteAccess(dir); err != nil {
		_ = stack.Stop()
		return err
	}
	defer func() {
		devstack.RemoveAccess(dir)
		fmt.Println("stopping: every instance deregisters, then the agent stops...")
		if stopErr := stack.Stop(); stopErr != nil {
			fmt.Fprintln(os.Stderr, "devstack: stop:", stopErr)
			return
		}
		fmt.Println("stopped, nothing left running")
	}()
	fmt.Printf("all instances passing in Consul after %s\n", time.Since(start).Round(100*time.Millisecond))
	printInstances(stack, counts)

	if err = runDemo(ctx, stack.Client, stack.MTLS()); err != nil {
		return err
	}

	printAccess(stack, dir, stack.MTLS())
	fmt.Println("running; press Ctrl-C to stop")
	<-ctx.Done()
	return nil
}

// printMode says which security mode the stack's instances run in: mtls
// if any does.
func printMode(mtlsMode bool) {
	mode := devstack.SecurityPlaintext
	if mtlsMode {
		mode = devstack.SecurityMTLS + " (an agent with ACLs on, a token per service, intentions from the configs' clients)"
	}
	fmt.Printf("security mode %s\n", mode)
}

// printInstances lists every instance of the stack with its ports.
func printInstances(stack *devstack.Stack, counts []devstack.ServiceCount) {
	width := 0
	for _, sc := range counts {
		width = max(width, len(sc.Name))
	}
	for _, sc := range counts {
		for _, p := range stack.Instances(sc.Name) {
			fmt.Printf("  %-*s grpc=%s http=%s gateway=%s pid=%d\n", width, sc.Name, p.GRPCAddr, p.HTTPAddr, p.GatewayAddr, p.PID())
		}
	}
}

// printAccess says where the Consul UI is and, in mtls mode, how to call a
// service from the shell.
func printAccess(stack *devstack.Stack, dir string, mtlsMode bool) {
	if !mtlsMode {
		fmt.Printf("\nConsul UI: http://%s/ui/\n", stack.ConsulAddr)
		return
	}
	fmt.Println("\nmtls: every gRPC port takes only mutual TLS with a certificate of this Consul's CA, and intentions decide who calls whom.")
	fmt.Println("to call a service from the shell: make cert NAME=<you> ALLOW=user,order  (writes .devstack/certs/<you>/ and prints the grpcurl and ghz lines)")
	fmt.Printf("Consul UI: http://%s/ui/ (log in with the token in %s)\n", stack.ConsulAddr, filepath.Join(dir, devstack.TokenFile))
}

// startData starts what -data needs: for postgres a local server, and the
// environment that points every instance at it; the stop function stops it.
func startData(ctx context.Context, driver, dir string) (env []string, stop func(), err error) {
	if driver != "postgres" {
		return nil, func() {}, nil
	}
	pg, err := devstack.StartPostgres(ctx, devstack.WithPostgresLogDir(dir))
	if err != nil {
		return nil, nil, err
	}
	fmt.Printf("PostgreSQL on %s (log %s)\n", pg.Addr(), pg.LogPath())
	stop = func() {
		if stopErr := pg.Stop(); stopErr != nil {
			fmt.Fprintln(os.Stderr, "devstack: stop postgres:", stopErr)
		}
	}
	return []string{"RAMPART_DATA_DRIVER=postgres", "DATABASE_URL=" + pg.DSN("postgres")}, stop, nil
}

// runDemo runs the demo flow through Consul discovery and prints each step
// with its trace ID, then curl lines that call the same services over
// HTTP/JSON at the gateways their instances registered in Consul. The
// launcher traces the flow like any client: its spans go wherever the
// OTEL_* variables send the services' spans.
func runDemo(ctx context.Context, consul *api.Client, mtlsMode bool) error {
	var opts []demo.DialOption
	if mtlsMode {
		// The launcher's own identity, which the stack's intentions allow
		// to call every service.
		src, err := rconsul.NewCertSource(ctx, consul, devstack.ClientIdentity, rconsul.WithLogger(log.NewStdLogger(io.Discard)))
		if err != nil {
			return err
		}
		defer func() { _ = src.Close() }()
		opts = append(opts, demo.WithCertificates(src))
	}
	tel, err := telemetry.New(ctx, telemetry.Config{}, telemetry.ResourceInfo{ServiceName: "devstack", ServiceVersion: "dev", InstanceID: "devstack"},
		telemetry.WithLookup(os.LookupEnv))
	if err != nil {
		return err
	}
	defer func() {
		flushCtx, cancelFlush := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelFlush()
		_ = tel.Shutdown(flushCtx)
	}()
	clients, err := demo.Dial(ctx, consul, tel, opts...)
	if err != nil {
		return err
	}
	defer clients.Close()
	fmt.Println("\ndemo flow:")
	demoCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := demo.Run(demoCtx, clients, os.Stdout)
	if err != nil {
		return err
	}
	userGW, err := demo.Gateway(demoCtx, consul, demo.UserService)
	if err != nil {
		return err
	}
	orderGW, err := demo.Gateway(demoCtx, consul, demo.OrderService)
	if err != nil {
		return err
	}
	fmt.Println("\nthe same over HTTP/JSON, at the instances' gateways (docs/http.md):")
	for _, line := range demo.CurlLines(userGW, orderGW, res) {
		fmt.Println("  " + line)
	}
	return nil
}

// checkFlags refuses a -data or -security it does not know.
func checkFlags(driver, security string) error {
	if driver != "" && driver != "sqlite" && driver != "postgres" {
		return fmt.Errorf("-data: %q is not sqlite or postgres", driver)
	}
	if security != "" && security != devstack.SecurityPlaintext && security != devstack.SecurityMTLS {
		return fmt.Errorf("-security: %q is not plaintext or mtls", security)
	}
	return nil
}

// everyServiceTwice is the -services default: two instances of every
// service of the repository at root.
func everyServiceTwice(root string) (string, error) {
	names, err := devstack.Services(root)
	if err != nil {
		return "", err
	}
	for i, n := range names {
		names[i] = n + "=2"
	}
	return strings.Join(names, ","), nil
}

func parseServices(s string) ([]devstack.ServiceCount, error) {
	var out []devstack.ServiceCount
	for _, part := range strings.Split(s, ",") {
		name, n, ok := strings.Cut(strings.TrimSpace(part), "=")
		count, err := strconv.Atoi(n)
		if !ok || err != nil || count < 1 || name == "" {
			return nil, fmt.Errorf("-services: %q is not name=count with count >= 1", part)
		}
		out = append(out, devstack.ServiceCount{Name: name, Instances: count})
	}
	return out, nil
}
