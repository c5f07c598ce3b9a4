package telemetry

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
)

// Values are built once per method, whatever the concurrency, and a
// caller inventing method names gets them built per call past the bound
// rather than a cache that grows without end.
func TestMethodCache(t *testing.T) {
	var builds atomic.Int64
	c := newMethodCache(func(m string) *string {
		builds.Add(1)
		return &m
	})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 100 {
				m := fmt.Sprintf("/svc/M%d", i%10)
				if got := c.get(m); *got != m {
					t.Errorf("get(%q) = %q", m, *got)
				}
			}
		})
	}
	wg.Wait()
	if n := builds.Load(); n != 10 {
		t.Errorf("%d builds for 10 methods", n)
	}
	for i := range maxCachedMethods {
		c.get(fmt.Sprintf("/made/up%d", i))
	}
	builds.Store(0)
	c.get("/one/more")
	c.get("/one/more")
	if n, size := builds.Load(), len(*c.m.Load()); n != 2 || size != maxCachedMethods {
		t.Errorf("past the bound: %d builds for two calls (want 2), %d cached (want %d)", n, size, maxCachedMethods)
	}
}

// Span names and attributes per semconv mode, for method names of every
// shape, as otelgrpc v0.72's internal.ParseFullMethod and
// ParseFullMethodOld give them.
func TestRPCAttrs(t *testing.T) {
	current, old, dup := semconvMode{}, semconvMode{noCurrent: true, old: true}, semconvMode{old: true}
	tests := []struct {
		mode   semconvMode
		method string
		name   string
		attrs  []attribute.KeyValue
	}{
		{current, "/user.v1.UserService/GetUser", "user.v1.UserService/GetUser", []attribute.KeyValue{
			attribute.String("rpc.method", "user.v1.UserService/GetUser"), attribute.String("rpc.system.name", "grpc"),
		}},
		{current, "no-slash", "no-slash", []attribute.KeyValue{attribute.String("rpc.system.name", "grpc")}},
		{old, "/user.v1.UserService/GetUser", "user.v1.UserService/GetUser", []attribute.KeyValue{
			attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", "user.v1.UserService"), attribute.String("rpc.method", "GetUser"),
		}},
		{old, "/a/b/c", "a/b/c", []attribute.KeyValue{
			attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", "a"), attribute.String("rpc.method", "b"),
		}},
		{old, "/service-only", "service-only", []attribute.KeyValue{attribute.String("rpc.system", "grpc")}},
		{old, "no-slash", "no-slash", nil},
		{dup, "/user.v1.UserService/GetUser", "user.v1.UserService/GetUser", []attribute.KeyValue{
			attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", "user.v1.UserService"),
			attribute.String("rpc.method", "user.v1.UserService/GetUser"), attribute.String("rpc.system.name", "grpc"),
		}},
	}
	for _, tt := range tests {
		name, attrs := tt.mode.rpcAttrs(tt.method)
		attrs = dedupe(attrs)
		if name != tt.name || fmt.Sprint(attrs) != fmt.Sprint(tt.attrs) {
			t.Errorf("%+v %q: %q %v, want %q %v", tt.mode, tt.method, name, attrs, tt.name, tt.attrs)
		}
	}
}

// The health service is left out by its service name's prefix, as
// otelgrpc's filters.HealthCheck does.
func TestIsHealth(t *testing.T) {
	for method, want := range map[string]bool{
		"/grpc.health.v1.Health/Check":  true,
		"/grpc.health.v1.Health/Watch":  true,
		"/grpc.health.v1.HealthX/Check": true,
		"/user.v1.UserService/GetUser":  false,
		"/grpc.health.v2.Health/Check":  false,
	} {
		if got := isHealth(method); got != want {
			t.Errorf("isHealth(%q) = %t, want %t", method, got, want)
		}
	}
}

// Addresses are compared by value: another connection's net.Addr for the
// same address finds the attributes already built.
func TestAddrCache(t *testing.T) {
	var c addrCache
	a := c.attrs(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9000})
	b := c.attrs(&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 9000})
	if &a[0] != &b[0] {
		t.Error("the same address was formatted twice")
	}
	if fmt.Sprint(a) != fmt.Sprint([]attribute.KeyValue{attribute.String("server.address", "127.0.0.1"), attribute.Int("server.port", 9000)}) {
		t.Errorf("attrs %v", a)
	}
	if got := c.attrs(&net.TCPAddr{IP: net.IPv6loopback, Port: 9000}); got[0].Value.AsString() != "::1" {
		t.Errorf("another address read as %v", got)
	}
	for i := range 20 {
		p := 10000 + i
		if got := c.attrs(&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: p}); got[1].Value.AsInt64() != int64(p) {
			t.Fatalf("port %d read as %v", p, got)
		}
	}
	if got := c.attrs(&net.UnixAddr{Name: "/tmp/s", Net: "unix"}); len(got) != 1 || got[0].Value.AsString() != "/tmp/s" {
		t.Errorf("unix address read as %v", got)
	}
}
