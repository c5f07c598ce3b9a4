package rpc_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/rampart-go/rampart/internal/rpc"
)

// An interceptor inside finds the report among its call options, whoever
// added options after it; without one there is none to find.
func TestReportIn(t *testing.T) {
	r := &rpc.AttemptReport{}
	peerOpt, trailerOpt := r.Options()
	var md metadata.MD
	opts := []grpc.CallOption{grpc.Header(&md), trailerOpt, peerOpt, grpc.WaitForReady(true)}
	if got := rpc.ReportIn(opts); got != r {
		t.Fatalf("ReportIn = %p, want the report %p", got, r)
	}
	if got := rpc.ReportIn([]grpc.CallOption{grpc.Header(&md), grpc.Peer(&r.Peer)}); got != nil {
		t.Fatalf("ReportIn without a report's options = %p, want nil", got)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = rpc.ReportIn(opts) }); allocs != 0 {
		t.Fatalf("ReportIn allocates %v times, want 0", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = r.Options() }); allocs != 0 {
		t.Fatalf("Options allocates %v times, want 0", allocs)
	}
}

// Reset clears what the previous attempt wrote. (That gRPC writes
// through the options is checked where real calls are made: retry's
// loopback tests and the e2e outlier test.)
func TestReportReset(t *testing.T) {
	r := &rpc.AttemptReport{Trailer: metadata.Pairs(rpc.PushbackTrailer, "10")}
	r.Peer.Addr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9000}
	r.Reset()
	if r.Peer.Addr != nil || r.Trailer != nil {
		t.Fatalf("after Reset: peer %v, trailer %v", r.Peer.Addr, r.Trailer)
	}
}

// gRPC writes an attempt's instance and trailer through the report's
// options, as it writes through its own grpc.Peer and grpc.Trailer.
func TestReportIsFilledByGRPC(t *testing.T) {
	lis, err := (&net.ListenConfig{}).Listen(testCtx(t), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(rpc.PushbackTrailer, "25"))
		return handler(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if serveErr := <-served; serveErr != nil {
			t.Errorf("serve: %v", serveErr)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	r := &rpc.AttemptReport{}
	peerOpt, trailerOpt := r.Options()
	if _, err := healthpb.NewHealthClient(conn).Check(testCtx(t), &healthpb.HealthCheckRequest{}, peerOpt, trailerOpt); err != nil {
		t.Fatal(err)
	}
	if r.Peer.Addr == nil || r.Peer.Addr.String() != lis.Addr().String() {
		t.Errorf("peer %v, want %v", r.Peer.Addr, lis.Addr())
	}
	if got := r.Trailer.Get(rpc.PushbackTrailer); len(got) != 1 || got[0] != "25" {
		t.Errorf("trailer %v, want the server's pushback", r.Trailer)
	}
}
