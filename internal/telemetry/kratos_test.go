package telemetry_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/middleware/logging"
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"go.opentelemetry.io/otel/trace"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/telemetry"
)

// loggingFrontend logs inside its handler, then calls the backend.
type loggingFrontend struct {
	frontend
	log *log.Helper
}

func (f *loggingFrontend) GetUserProfile(ctx context.Context, req *userv1.GetUserProfileRequest) (*userv1.GetUserProfileReply, error) {
	f.log.WithContext(ctx).Info("in the handler")
	return f.frontend.GetUserProfile(ctx, req)
}

// Behind a Kratos server, as the services run: the handler's context still
// carries the server span (Kratos merges contexts but reads the call's
// first), so the handler's log lines carry its IDs, as do the Kratos
// logging middleware's, and its outgoing logical span is the server
// span's child.
func TestKratosServerKeepsTheServerSpan(t *testing.T) {
	clearOTelEnv(t)
	tel, rec := newTelemetry(t, telemetry.Config{})
	var out syncBuffer
	logger := telemetry.Logger(log.NewStdLogger(&out))

	backAddr := serve(t, tel, &backend{})
	front := &loggingFrontend{
		frontend: frontend{users: dial(t, tel, backAddr, tel.LogicalSpan("user"))},
		log:      log.NewHelper(logger),
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(testCtx(t), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := kgrpc.NewServer(
		kgrpc.Listener(lis),
		kgrpc.Options(tel.ServerInterceptor(), tel.ServerStreamInterceptor()),
		kgrpc.Middleware(logging.Server(logger)),
	)
	userv1.RegisterUserServiceServer(srv, front)
	started := make(chan error, 1)
	go func() { started <- srv.Start(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
		if err := <-started; err != nil {
			t.Errorf("kratos server: %v", err)
		}
	})

	client := dial(t, tel, lis.Addr().String())
	if _, err := client.GetUserProfile(testCtx(t), &userv1.GetUserProfileRequest{Id: "u1"}); err != nil {
		t.Fatalf("GetUserProfile: %v", err)
	}

	// attempt + server GetUserProfile, logical + attempt + server GetUser
	spans := waitSpans(t, rec, 5)
	server := one(t, find(t, spans, getUserProfile, trace.SpanKindServer, otelgrpcScope), "server GetUserProfile")
	logical := one(t, find(t, spans, getUser, trace.SpanKindClient, telemetryScope), "logical GetUser")
	if !isChild(logical, server) {
		t.Errorf("logical GetUser's parent is %s, want the server span %s", logical.Parent().SpanID(), server.SpanContext().SpanID())
	}

	ids := "trace_id=" + server.SpanContext().TraceID().String() + " span_id=" + server.SpanContext().SpanID().String()
	var handler, middleware bool
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		switch {
		case strings.Contains(line, "in the handler"):
			handler = strings.Contains(line, ids)
		case strings.Contains(line, "kind=server"):
			middleware = strings.Contains(line, ids)
		}
	}
	if !handler || !middleware {
		t.Errorf("want %q on the handler's line (%t) and the logging middleware's (%t):\n%s",
			ids, handler, middleware, strings.Join(strings.Split(strings.TrimSpace(out.String()), "\n"), "\n"))
	}
}
