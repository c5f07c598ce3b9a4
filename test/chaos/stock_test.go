package chaos_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc/codes"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/mtls"
	"github.com/rampart-go/rampart/test/chaos"
)

// The Kratos stock client runs in a child process (this test binary run
// again with stockChildEnv set): the Rampart client in this process needs
// server.Setup, which sets Kratos' global selector to P2C, and Kratos'
// balancer reads that global each time it builds a picker, with no
// per-connection choice. In a process of its own the stock client keeps
// Kratos' default selector, weighted round robin, as shipped.
const (
	stockChildEnv = "RAMPART_CHAOS_STOCK_CHILD"
	stockMTLSEnv  = "RAMPART_CHAOS_STOCK_MTLS"
	stockReady    = "ready"
)

// stockChild is a running child process with the stock client under load.
type stockChild struct {
	cmd    *exec.Cmd
	out    *bufio.Scanner
	stderr bytes.Buffer
	done   chan struct{}
	calls  chaos.Calls
	err    error
}

// startStock starts the stock client calling GetUser(user) of s at rate for
// duration, and returns once it has dialled and is about to start. In mtls
// the child reads with s's management token and presents a certificate of
// devstack.ClientIdentity.
func startStock(t *testing.T, ctx context.Context, s *devstack.Stack, user string, rate int, duration time.Duration) *stockChild {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sc := &stockChild{done: make(chan struct{})}
	sc.cmd = exec.CommandContext(ctx, exe)
	sc.cmd.Env = append(os.Environ(),
		stockChildEnv+"=1",
		api.HTTPAddrEnvName+"="+s.ConsulAddr,
		api.HTTPTokenEnvName+"="+s.ManagementToken(),
		stockMTLSEnv+"="+strconv.FormatBool(s.MTLS()),
		"CHAOS_USER="+user,
		"CHAOS_RATE="+strconv.Itoa(rate),
		"CHAOS_DURATION="+duration.String(),
	)
	sc.cmd.Stderr = &sc.stderr
	stdout, err := sc.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err = sc.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc.out = bufio.NewScanner(stdout)
	if !sc.out.Scan() || sc.out.Text() != stockReady {
		_ = sc.cmd.Wait()
		t.Fatalf("stock client did not start: %q %s", sc.out.Text(), sc.stderr.String())
	}
	go sc.collect(stdout)
	t.Cleanup(func() { <-sc.done })
	return sc
}

func (sc *stockChild) collect(stdout io.Reader) {
	defer close(sc.done)
	for sc.out.Scan() {
		f := strings.Fields(sc.out.Text())
		if len(f) != 3 {
			continue
		}
		start, _ := strconv.ParseInt(f[0], 10, 64)
		lat, _ := strconv.ParseInt(f[1], 10, 64)
		code, _ := strconv.Atoi(f[2])
		sc.calls = append(sc.calls, chaos.Call{Start: time.Unix(0, start), Latency: time.Duration(lat), Code: codes.Code(code)})
	}
	_, _ = io.Copy(io.Discard, stdout)
	sc.err = sc.cmd.Wait()
}

// wait returns the child's record once it has exited.
func (sc *stockChild) wait(t *testing.T) chaos.Calls {
	t.Helper()
	<-sc.done
	if sc.err != nil {
		t.Errorf("stock client process: %v\n%s", sc.err, sc.stderr.String())
	}
	return sc.calls
}

// runStockChild is the child's side: dial, say ready, run the load, print
// one line per call ("start-unix-ns latency-ns code").
func runStockChild() int {
	rate, _ := strconv.Atoi(os.Getenv("CHAOS_RATE"))
	duration, _ := time.ParseDuration(os.Getenv("CHAOS_DURATION"))
	user := os.Getenv("CHAOS_USER")
	cfg := api.DefaultNonPooledConfig()
	client, err := api.NewClient(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration+time.Minute)
	defer cancel()
	var tlsConf *tls.Config
	if mtlsMode, _ := strconv.ParseBool(os.Getenv(stockMTLSEnv)); mtlsMode {
		src, srcErr := consul.NewCertSource(ctx, client, devstack.ClientIdentity, consul.WithLogger(log.NewStdLogger(io.Discard)))
		if srcErr != nil {
			fmt.Fprintln(os.Stderr, srcErr)
			return 1
		}
		defer func() { _ = src.Close() }()
		tlsConf = mtls.ClientConfig(src, "user")
	}
	conn, closeConn, err := chaos.DialStock(ctx, client, "user", tlsConf)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer closeConn()
	users := userv1.NewUserServiceClient(conn)
	fmt.Println(stockReady)
	calls := chaos.Start(ctx, chaos.Load{
		Rate: rate, Duration: duration, Timeout: callTimeout,
		Call: func(ctx context.Context) error {
			_, err := users.GetUser(ctx, &userv1.GetUserRequest{Id: user})
			return err
		},
	}).Wait()
	w := bufio.NewWriter(os.Stdout)
	for _, c := range calls {
		fmt.Fprintf(w, "%d %d %d\n", c.Start.UnixNano(), int64(c.Latency), int(c.Code))
	}
	if err := w.Flush(); err != nil {
		return 1
	}
	return 0
}
