package server

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/selector"
	"github.com/go-kratos/kratos/v2/selector/p2c"
	"go.opentelemetry.io/otel"

	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/telemetry"
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
			client, server := cl.Keepalive.Params(), serverKeepalive(callee.Server.GRPC)
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

// TestSetupChoosesP2C: after Setup, Kratos builds its pickers with P2C.
func TestSetupChoosesP2C(t *testing.T) {
	Setup()
	Setup() // once: a second call changes nothing
	// Kratos wraps the global builder; what it builds shows the balancer.
	sel, ok := selector.GlobalSelector().Build().(*selector.Default)
	if !ok {
		t.Fatalf("global selector builds %T, want Kratos' default selector", sel)
	}
	if _, ok := sel.Balancer.(*p2c.Balancer); !ok {
		t.Fatalf("balancer = %T, want *p2c.Balancer", sel.Balancer)
	}
}

// TestInstallTelemetry: the root makes the instance's providers the
// OpenTelemetry globals, and OpenTelemetry's own errors (a failed export,
// say) go to the service's logger, so they are lines with the instance like
// the rest.
func TestInstallTelemetry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tel, err := telemetry.New(ctx, telemetry.Config{}, telemetry.ResourceInfo{ServiceName: "user", InstanceID: "user-1"})
	if err != nil {
		t.Fatal(err)
	}
	prevTP, prevMP, prevProp := otel.GetTracerProvider(), otel.GetMeterProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() {
		_ = tel.Shutdown(context.Background())
		otel.SetTracerProvider(prevTP)                              //nolint:forbidigo // restores the globals this test changed
		otel.SetMeterProvider(prevMP)                               //nolint:forbidigo // as above
		otel.SetTextMapPropagator(prevProp)                         //nolint:forbidigo // as above
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {})) //nolint:forbidigo // as above
	})
	var buf bytes.Buffer
	installTelemetry(tel, log.NewStdLogger(&buf))

	if otel.GetTracerProvider() != tel.TracerProvider() || otel.GetMeterProvider() != tel.MeterProvider() {
		t.Error("the providers are not the OpenTelemetry globals")
	}
	if fields := otel.GetTextMapPropagator().Fields(); !slices.Contains(fields, "traceparent") || !slices.Contains(fields, "baggage") {
		t.Error("no propagator installed")
	}
	otel.Handle(errors.New("export failed"))
	if got, want := strings.TrimSpace(buf.String()), "WARN msg=opentelemetry: export failed"; got != want {
		t.Errorf("logged %q, want %q", got, want)
	}
}
