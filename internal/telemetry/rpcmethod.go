package telemetry

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"google.golang.org/grpc/codes"

	"github.com/rampart-go/rampart/internal/rpc"
)

// numCodes is how many gRPC codes there are (OK to Unauthenticated): the
// per-code values of a method are built for these once, and for any other
// code on the call that meets it.
const numCodes = 17

// maxCachedMethods bounds a method cache. A server only meets the methods
// it registered (gRPC answers any other one before the interceptors run),
// and a client the methods its code calls, so the bound is never reached
// in practice; a caller that invented method names would find the values
// built per call past it, not memory growing without end.
const maxCachedMethods = 1024

// methodCache holds what is built once per full method name: a map read
// without a lock or an allocation, replaced by a copy when a method is
// added (a few times in a process's life).
type methodCache[T any] struct {
	build func(fullMethod string) *T

	mu sync.Mutex // serialises additions
	m  atomic.Pointer[map[string]*T]
}

func newMethodCache[T any](build func(string) *T) *methodCache[T] {
	c := &methodCache[T]{build: build}
	c.m.Store(&map[string]*T{})
	return c
}

func (c *methodCache[T]) get(fullMethod string) *T {
	if v, ok := (*c.m.Load())[fullMethod]; ok {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.m.Load()
	if v, ok := old[fullMethod]; ok {
		return v
	}
	v := c.build(fullMethod)
	if len(old) >= maxCachedMethods {
		return v
	}
	next := make(map[string]*T, len(old)+1)
	for k, x := range old {
		next[k] = x
	}
	next[fullMethod] = v
	c.m.Store(&next)
	return v
}

// perCode is a value for each gRPC code, built up front for the codes gRPC
// defines and on the call for any other.
type perCode[T any] struct {
	known [numCodes]T
	build func(codes.Code) T
}

func newPerCode[T any](build func(codes.Code) T) perCode[T] {
	p := perCode[T]{build: build}
	for c := range codes.Code(numCodes) {
		p.known[c] = build(c)
	}
	return p
}

func (p *perCode[T]) of(c codes.Code) T {
	if c < numCodes {
		return p.known[c]
	}
	return p.build(c)
}

// rpcMethod is what a server or attempt span and the duration metrics need
// of one full method, built once.
type rpcMethod struct {
	// name is the span name: the full method without its leading slash.
	name string
	// skip is set for the health service: Consul calls it every few seconds
	// and its spans would bury the ones worth reading, so it gets neither
	// span nor metric (its W3C headers still pass through).
	skip bool
	// attrs are the span's attributes known at its start.
	attrs []attribute.KeyValue
	// status is each code's rpc.response.status_code attribute.
	status perCode[attribute.KeyValue]
	// current and old are each code's attribute set for the current and
	// the pre-1.39 duration instrument, as the one record option a
	// measurement takes (a slice, so recording allocates none); nil when
	// the mode records none.
	current, old perCode[[]metric.RecordOption]
}

// newRPCMethod builds a method's values as otelgrpc v0.72 built them per
// call: the same names and attributes per semconv mode, the same metric
// attribute sets once filtered by rpcMetricLabels. extra
// are the metric attributes the side adds (the client's target); isError
// tells which codes fail the call on this side (error.type).
func newRPCMethod(mode semconvMode, fullMethod string, extra []attribute.KeyValue, isError func(codes.Code) bool, dur durations) *rpcMethod {
	name, attrs := mode.rpcAttrs(fullMethod)
	m := &rpcMethod{
		name:   name,
		skip:   isHealth(fullMethod),
		attrs:  dedupe(attrs),
		status: newPerCode(func(c codes.Code) attribute.KeyValue { return semconv.RPCResponseStatusCode(rpc.CodeName(c)) }),
	}
	metricAttrs := func(c codes.Code, errorType bool) []metric.RecordOption {
		kvs := make([]attribute.KeyValue, 0, len(attrs)+len(extra)+2)
		kvs = append(append(append(kvs, attrs...), extra...), m.status.of(c))
		if errorType && isError(c) {
			kvs = append(kvs, semconv.ErrorTypeKey.String(rpc.CodeName(c)))
		}
		set := attribute.NewSet(kvs...)
		set, _ = set.Filter(rpcMetricLabels)
		return []metric.RecordOption{metric.WithAttributeSet(set)}
	}
	if dur.current != nil {
		m.current = newPerCode(func(c codes.Code) []metric.RecordOption { return metricAttrs(c, true) })
	}
	if dur.old != nil {
		// The pre-1.39 conventions had no error.type.
		m.old = newPerCode(func(c codes.Code) []metric.RecordOption { return metricAttrs(c, false) })
	}
	return m
}

// rpcAttrs is the span name and the attributes of a call to fullMethod in
// the mode, as otelgrpc parses the method: in dup mode the old attributes,
// then the current ones and rpc.system.name, so that the current
// rpc.method (fully qualified) wins when the keys are deduplicated.
func (m semconvMode) rpcAttrs(fullMethod string) (string, []attribute.KeyValue) {
	name, ok := strings.CutPrefix(fullMethod, "/")
	if !ok {
		name = fullMethod
	}
	var attrs []attribute.KeyValue
	if m.old && ok {
		service, method, found := strings.Cut(name, "/")
		if found {
			method, _, _ = strings.Cut(method, "/")
			attrs = append(attrs, oldRPCSystemKey.String("grpc"), oldRPCServiceKey.String(service), oldRPCMethodKey.String(method))
		} else {
			attrs = append(attrs, oldRPCSystemKey.String("grpc"))
		}
	}
	if !m.noCurrent {
		if ok {
			attrs = append(attrs, semconv.RPCMethod(name))
		}
		attrs = append(attrs, semconv.RPCSystemNameGRPC)
	}
	return name, attrs
}

// dedupe keeps one attribute per key, in the place of its first
// occurrence with the value of its last, as the SDK does with a span's.
func dedupe(kvs []attribute.KeyValue) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(kvs))
	for _, kv := range kvs {
		if i := indexOfKey(out, kv.Key); i >= 0 {
			out[i] = kv
			continue
		}
		out = append(out, kv)
	}
	return out
}

func indexOfKey(kvs []attribute.KeyValue, k attribute.Key) int {
	for i, kv := range kvs {
		if kv.Key == k {
			return i
		}
	}
	return -1
}

// isHealth reports whether fullMethod belongs to the gRPC health service,
// matched as otelgrpc's filters.HealthCheck matches it: the service part
// starts with grpc.health.v1.Health.
func isHealth(fullMethod string) bool {
	service := fullMethod
	if i := strings.LastIndexByte(service, '/'); i >= 0 {
		service = service[:i]
	}
	return strings.HasPrefix(strings.TrimLeft(service, "/"), "grpc.health.v1.Health")
}

// serverError reports whether code is the server's failure rather than
// the caller's, the codes the RPC conventions give a server span status
// Error and a server duration error.type for.
func serverError(code codes.Code) bool {
	switch code {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// clientError reports whether code fails the call for its client: any
// code but OK.
func clientError(code codes.Code) bool { return code != codes.OK }

// spanAttrs holds the buffers a span's attributes are gathered in before
// the one SetAttributes call that gives them to the span: the SDK copies
// them into a slice of the exact size, so a span's attributes cost one
// allocation, where a SetAttributes per group regrows the span's slice
// each time. Only the SDK's spans get them (New builds the provider), and
// they do not keep the slice they are given.
var spanAttrs = sync.Pool{New: func() any {
	b := make([]attribute.KeyValue, 0, 16)
	return &b
}}

// setAttrs gives span the attributes gathered in *buf and returns the
// buffer to the pool.
func setAttrs(span interface{ SetAttributes(...attribute.KeyValue) }, buf *[]attribute.KeyValue, kvs []attribute.KeyValue) {
	span.SetAttributes(kvs...)
	clear(kvs)
	*buf = kvs[:0]
	spanAttrs.Put(buf)
}

// addrCache holds the server.address and server.port attributes of the
// TCP addresses a side meets: a server's own listening address, a
// client's few instances. gRPC gives each connection its own net.Addr, so
// addresses are compared by value; one found costs no allocation. When
// more addresses are in use than it has slots, the newest replace the
// oldest and the rest are formatted per call.
type addrCache struct {
	next  atomic.Uint32
	slots [8]atomic.Pointer[addrEntry]
}

type addrEntry struct {
	ip    net.IP
	port  int
	zone  string
	attrs []attribute.KeyValue
}

func (c *addrCache) attrs(addr net.Addr) []attribute.KeyValue {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return hostPortAttrs(addr.String())
	}
	for i := range c.slots {
		if e := c.slots[i].Load(); e != nil && e.port == tcp.Port && e.zone == tcp.Zone && e.ip.Equal(tcp.IP) {
			return e.attrs
		}
	}
	e := &addrEntry{ip: slices.Clone(tcp.IP), port: tcp.Port, zone: tcp.Zone, attrs: hostPortAttrs(tcp.String())}
	c.slots[c.next.Add(1)%uint32(len(c.slots))].Store(e)
	return e.attrs
}

// hostPortAttrs are server.address and server.port of hostport, as
// otelgrpc reads them: the address alone when it has no numeric port.
func hostPortAttrs(hostport string) []attribute.KeyValue {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddress(hostport)}
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddress(host)}
	}
	return []attribute.KeyValue{semconv.ServerAddress(host), semconv.ServerPort(p)}
}
