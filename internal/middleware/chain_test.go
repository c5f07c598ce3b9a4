package middleware

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/rpc"
)

// TestKeepaliveSidesAgree checks every client of the shipped configs
// against the server it calls: the client pings idle connections, and the
// server lets it, at the client's rate. Otherwise the server would close
// each idle connection with GOAWAY too_many_pings.
func TestKeepaliveSidesAgree(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no configs found: %v", err)
	}
	services := map[string]*conf.Bootstrap{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := conf.Parse(raw, func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		services[c.Service.Name] = c
	}
	var checked int
	for caller, c := range services {
		for name, cl := range c.Clients {
			u, err := url.Parse(cl.Target)
			if err != nil {
				t.Fatal(err)
			}
			callee, ok := services[strings.Trim(u.Path, "/")]
			if !ok {
				t.Fatalf("%s: clients.%s calls %s, which has no config", caller, name, cl.Target)
			}
			client, server := clientKeepalive(cl.Keepalive), serverKeepalive(callee.Server.GRPC)
			if !client.PermitWithoutStream {
				t.Errorf("%s -> %s: client does not ping idle connections", caller, name)
			}
			if !server.PermitWithoutStream {
				t.Errorf("%s -> %s: server refuses pings on idle connections", caller, name)
			}
			if client.Time < server.MinTime {
				t.Errorf("%s -> %s: client pings every %s, server allows at most every %s", caller, name, client.Time, server.MinTime)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no client checked")
	}
}

// syncRecorder keeps every log line as text; the server logs from its own
// goroutines.
type syncRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *syncRecorder) Log(level log.Level, kv ...any) error {
	var b strings.Builder
	b.WriteString(level.String())
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, b.String())
	return nil
}

func (r *syncRecorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

// panicking is a user service whose CreateUser has a bug.
type panicking struct {
	userv1.UnimplementedUserServiceServer
}

func (panicking) CreateUser(context.Context, *userv1.CreateUserRequest) (*userv1.CreateUserReply, error) {
	panic("nil map write in handler")
}

// TestPanicIsAccessLoggedAsInternal serves a handler that panics behind the
// server chain, in process over real gRPC: the caller gets Internal, the
// access log has the call with that code, and no log line, Kratos' global
// logger included, holds the request.
func TestPanicIsAccessLoggedAsInternal(t *testing.T) {
	const secret = "ada-secret-email@example.com"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := &syncRecorder{}
	// Kratos' own lines go to the global logger; set before the server
	// starts and restored after it stopped, so no goroutine races the swap.
	prev := log.GetLogger()
	log.SetLogger(rec)
	defer log.SetLogger(prev)

	c := conf.Default()
	inj, err := NewFaults(c)
	if err != nil {
		t.Fatal(err)
	}
	srv := kgrpc.NewServer(kgrpc.Address("127.0.0.1:0"), kgrpc.CustomHealth())
	srv.Use("/"+userv1.UserService_ServiceDesc.ServiceName+"/*", NewServerChain(c, rec, inj, nil)...)
	userv1.RegisterUserServiceServer(srv, panicking{})
	endpoint, err := srv.Endpoint()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Start(context.Background()) }()
	defer func() {
		_ = srv.Stop(context.Background())
		if serveErr := <-served; serveErr != nil {
			t.Errorf("serve: %v", serveErr)
		}
	}()

	conn, err := grpc.NewClient(endpoint.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_, err = userv1.NewUserServiceClient(conn).CreateUser(ctx, &userv1.CreateUserRequest{Name: "Ada", Email: secret})
	if status.Code(err) != codes.Internal || kerrors.Reason(err) != rpc.ReasonPanic {
		t.Fatalf("CreateUser = %v, want Internal with reason %s", err, rpc.ReasonPanic)
	}

	logged := rec.text()
	if !strings.Contains(logged, "kind=server operation=/user.v1.UserService/CreateUser code=Internal") {
		t.Errorf("no access-log line with code Internal for the call that panicked:\n%s", logged)
	}
	if !strings.Contains(logged, "panic=nil map write in handler") {
		t.Errorf("panic not logged:\n%s", logged)
	}
	if strings.Contains(logged, secret) {
		t.Errorf("the request is in the log:\n%s", logged)
	}
}
