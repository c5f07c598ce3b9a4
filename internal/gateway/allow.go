package gateway

import (
	"context"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
)

// routeMethods are the methods google.api.http rules can bind (custom
// rules aside), in the order an Allow header lists them.
var routeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// routeProbe answers which methods have a route for a path. grpc-gateway's
// mux knows, when it answers 405, but does not say; so the same routes are
// registered a second time on a mux whose middleware only notes that a
// route matched and never calls the handler, and a path is tried with each
// method. Only a 405 pays for it.
type routeProbe struct{ mux *runtime.ServeMux }

// probeKey marks a probe request; its value is where the match is noted.
type probeKey struct{}

func newRouteProbe(register Register, conn *grpc.ClientConn) (*routeProbe, error) {
	mux := runtime.NewServeMux(
		runtime.WithDisablePathLengthFallback(),
		runtime.WithMiddlewares(func(runtime.HandlerFunc) runtime.HandlerFunc {
			return func(_ http.ResponseWriter, r *http.Request, _ map[string]string) {
				if matched, ok := r.Context().Value(probeKey{}).(*bool); ok {
					*matched = true
				}
			}
		}),
		runtime.WithRoutingErrorHandler(func(context.Context, *runtime.ServeMux, runtime.Marshaler, http.ResponseWriter, *http.Request, int) {}),
	)
	if err := register(context.Background(), mux, conn); err != nil {
		return nil, err
	}
	return &routeProbe{mux: mux}, nil
}

// allowed returns the methods that have a route for r's path.
func (p *routeProbe) allowed(r *http.Request) []string {
	var allow []string
	for _, m := range routeMethods {
		matched := false
		probe, err := http.NewRequestWithContext(context.WithValue(r.Context(), probeKey{}, &matched), m, r.URL.String(), http.NoBody)
		if err != nil {
			continue
		}
		p.mux.ServeHTTP(discard{}, probe)
		if matched {
			allow = append(allow, m)
		}
	}
	return allow
}

// discard is a ResponseWriter for probes, which write nothing.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}
