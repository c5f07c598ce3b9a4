// Package gateway serves a service's API as HTTP/JSON on the public
// listener, from the google.api.http rules of its proto (grpc-gateway).
//
// Policy: the gateway translates and decides nothing else. Every HTTP call
// becomes a gRPC call to the instance's own gRPC port over loopback, never a
// direct call of the handler, so the whole server chain (load shedding,
// validation, the access log, traces, fault injection) meets an HTTP call
// exactly as it meets a gRPC one. What the gateway adds is the translation,
// one rule each:
//
//   - A gRPC code becomes the HTTP status of the standard table
//     (runtime.HTTPStatusFromCode: InvalidArgument 400, NotFound 404,
//     AlreadyExists 409, ResourceExhausted 429, Unavailable 503, …), and an
//     error is answered as JSON (ErrorBody) with the reason and field of
//     the status's ErrorInfo.
//   - A ResourceExhausted or Unavailable answer whose gRPC trailer holds a
//     positive grpc-retry-pushback-ms gets Retry-After, in whole seconds
//     rounded up; a negative pushback (gRFC A6: do not retry) gets none.
//   - The traceparent and tracestate headers travel as gRPC metadata under
//     their own names, so the server span continues the caller's trace;
//     Idempotency-Key fills an empty idempotency_key field of any request
//     message that has one (the body's key wins); other headers are
//     forwarded as grpc-gateway does by default.
//   - What cannot become a request is refused with a 4xx JSON error before
//     any gRPC call: a malformed body, an unknown field, a wrong type, a
//     body over max_body_bytes (413), an unknown path (404), a wrong method
//     (405).
//
// It imports nothing of this module but the leaf internal/rpc: the server
// shell hands it the routes to register (service.API.Gateway) and the
// address of the gRPC port.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

// DefaultMaxBodyBytes is gRPC's default limit on a received message (4 MiB),
// so the HTTP path accepts about what the gRPC path does.
const DefaultMaxBodyBytes = 4 << 20

// Config is server.gateway.
type Config struct {
	// Addr is the public listener, host:port; port 0 picks a free port and
	// the port bound is the one registered. Empty turns the gateway off.
	Addr string `yaml:"addr"`
	// MaxBodyBytes bounds a request body: a larger one is answered 413
	// without being read further.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// DefaultConfig binds loopback on a free port, as the other listeners do;
// production binds an address its clients reach.
func DefaultConfig() Config {
	return Config{Addr: "127.0.0.1:0", MaxBodyBytes: DefaultMaxBodyBytes}
}

// Validate reports every field the gateway cannot work with, each as
// "key: reason".
func (c Config) Validate() error {
	var errs []error
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("addr: must be host:port, or empty to turn the gateway off, got %q", c.Addr))
		}
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("max_body_bytes: must be > 0"))
	}
	return errors.Join(errs...)
}

// Register puts a service's HTTP routes on mux, each calling conn: the
// generated Register<Svc>ServiceHandler of <svc>.pb.gw.go.
type Register func(ctx context.Context, mux *runtime.ServeMux, conn *grpc.ClientConn) error

// The public listener's timeouts. A client has readHeaderTimeout to send
// its headers and readTimeout for the whole request: a body of the default
// max_body_bytes in that time is over 100 KiB/s, slower than any client
// worth waiting for. There is no write timeout: the gRPC call behind a reply
// is bounded by server.grpc.timeout, and a write deadline would cut a reply
// mid-way instead of answering an error. A keep-alive connection idle for
// idleTimeout is closed.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 2 * time.Minute
)

// Gateway is the public HTTP/JSON listener of one instance: Connect, then
// Serve, then Shutdown.
type Gateway struct {
	cfg      Config
	register Register
	srv      *http.Server
	conn     *grpc.ClientConn
}

// New returns a gateway that serves register's routes once connected.
func New(c Config, register Register) *Gateway {
	return &Gateway{
		cfg:      c,
		register: register,
		srv: &http.Server{
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			IdleTimeout:       idleTimeout,
		},
	}
}

// Connect opens the connection to target, the instance's own gRPC port
// (host:port on loopback), and registers the routes on it. tlsConf secures
// the connection when the port takes only TLS (in mtls mode, a client
// configuration presenting the instance's own certificate); nil dials
// plaintext. The connection is lazy: nothing is dialled before the first
// call. Call it once, before Serve.
func (g *Gateway) Connect(target string, tlsConf *tls.Config) error {
	creds := insecure.NewCredentials()
	if tlsConf != nil {
		creds = credentials.NewTLS(tlsConf)
	}
	conn, err := grpc.NewClient("passthrough:///"+target,
		grpc.WithTransportCredentials(creds),
		grpc.WithUnaryInterceptor(fillIdempotencyKey),
	)
	if err != nil {
		return fmt.Errorf("gateway: dial %s: %w", target, err)
	}
	routes, err := newRouteProbe(g.register, conn)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("gateway: register routes: %w", err)
	}
	mux := newMux(routes)
	if err := g.register(context.Background(), mux, conn); err != nil {
		_ = conn.Close()
		return fmt.Errorf("gateway: register routes: %w", err)
	}
	g.conn = conn
	g.srv.Handler = limitBody(mux, g.cfg.MaxBodyBytes)
	return nil
}

// Serve answers HTTP calls on lis until Shutdown, after which it returns
// http.ErrServerClosed.
func (g *Gateway) Serve(lis net.Listener) error { return g.srv.Serve(lis) }

// Shutdown stops taking calls, waits for the calls in flight (their gRPC
// calls finish on a server that still serves), then closes the connection
// to the gRPC port. Calls still running when ctx ends are cut.
func (g *Gateway) Shutdown(ctx context.Context) error {
	err := g.srv.Shutdown(ctx)
	if err != nil {
		_ = g.srv.Close()
	}
	if g.conn != nil {
		if cerr := g.conn.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("gateway: close connection: %w", cerr)
		}
	}
	return err
}

// newMux is grpc-gateway's mux with the policies of this package: JSON in
// and out (protojson, lowerCamelCase names as in the OpenAPI documents, every
// field written; a field the message does not have is an error, not
// ignored), its own header matcher and error answers (a 405 lists the
// methods routes asks for). grpc-gateway's path-length fallback is off: it
// serves a form-encoded POST to a GET-only path as the GET (what `curl -d`
// sends by default), and a method the API does not declare for a path is a
// 405, whatever the body's type.
func newMux(routes *routeProbe) *runtime.ServeMux {
	return runtime.NewServeMux(
		runtime.WithDisablePathLengthFallback(),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, jsonBody{&runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}}),
		runtime.WithIncomingHeaderMatcher(matchHeader),
		runtime.WithErrorHandler(writeError),
		runtime.WithRoutingErrorHandler(routes.writeRoutingError),
	)
}

// jsonBody is grpc-gateway's protojson marshaler whose decoding errors say
// that the body is at fault ("request body: unexpected EOF"): the generated
// handlers pass the bare error on as the message.
type jsonBody struct{ *runtime.JSONPb }

func (j jsonBody) NewDecoder(r io.Reader) runtime.Decoder {
	d := j.JSONPb.NewDecoder(r)
	return runtime.DecoderFunc(func(v any) error {
		if err := d.Decode(v); err != nil {
			// %w keeps io.EOF, which the handlers take for an empty body.
			return fmt.Errorf("request body: %w", err)
		}
		return nil
	})
}
