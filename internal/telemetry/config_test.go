package telemetry_test

import (
	"os"
	"strings"
	"testing"

	"github.com/rampart-go/rampart/internal/telemetry"
)

// The standard variables win over the file, field by field, and the
// defaults apply when neither says anything.
func TestResolvePrecedence(t *testing.T) {
	fileOTLP := telemetry.Config{
		TracesExporter: "otlp",
		OTLPEndpoint:   "http://collector.file:4318",
		OTLPProtocol:   "http/protobuf",
		Sampler:        "always_off",
		SamplerArg:     "0.5",
	}
	tests := []struct {
		name string
		cfg  telemetry.Config
		env  map[string]string
		want telemetry.Settings
	}{
		{
			name: "nothing set: no export, parent-based always on",
			want: telemetry.Settings{
				TracesExporter: "none", OTLPEndpointFrom: "default", OTLPProtocol: "http/protobuf",
				Sampler: "parentbased_always_on", SamplerFrom: "default",
			},
		},
		{
			name: "an endpoint in the file turns otlp on",
			cfg:  telemetry.Config{OTLPEndpoint: "http://collector.file:4317", OTLPProtocol: "grpc"},
			want: telemetry.Settings{
				TracesExporter: "otlp", OTLPEndpoint: "http://collector.file:4317", OTLPEndpointFrom: "telemetry.otlp_endpoint",
				OTLPProtocol: "grpc", Sampler: "parentbased_always_on", SamplerFrom: "default",
			},
		},
		{
			name: "an endpoint variable turns otlp on",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"},
			want: telemetry.Settings{
				TracesExporter: "otlp", OTLPEndpoint: "http://127.0.0.1:4317", OTLPEndpointFrom: "OTEL_EXPORTER_OTLP_ENDPOINT",
				OTLPProtocol: "http/protobuf", Sampler: "parentbased_always_on", SamplerFrom: "default",
			},
		},
		{
			name: "file only",
			cfg:  fileOTLP,
			want: telemetry.Settings{
				TracesExporter: "otlp", OTLPEndpoint: "http://collector.file:4318", OTLPEndpointFrom: "telemetry.otlp_endpoint",
				OTLPProtocol: "http/protobuf", Sampler: "always_off", SamplerFrom: "telemetry.sampler",
			},
		},
		{
			name: "every variable wins over the file",
			cfg:  fileOTLP,
			env: map[string]string{
				"OTEL_TRACES_EXPORTER":        "console",
				"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.env:4317",
				"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
				"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
				"OTEL_TRACES_SAMPLER_ARG":     "0.25",
			},
			want: telemetry.Settings{
				TracesExporter: "stdout", OTLPEndpoint: "https://collector.env:4317", OTLPEndpointFrom: "OTEL_EXPORTER_OTLP_ENDPOINT",
				OTLPProtocol: "grpc", Sampler: "parentbased_traceidratio", SamplerArg: 0.25, SamplerFrom: "OTEL_TRACES_SAMPLER",
			},
		},
		{
			name: "the TRACES_ variables win over the generic ones",
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://generic:4318",
				"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4317",
				"OTEL_EXPORTER_OTLP_PROTOCOL":        "http/protobuf",
				"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
			},
			want: telemetry.Settings{
				TracesExporter: "otlp", OTLPEndpoint: "http://traces:4317", OTLPEndpointFrom: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
				OTLPProtocol: "grpc", Sampler: "parentbased_always_on", SamplerFrom: "default",
			},
		},
		{
			name: "none in a variable wins over an endpoint",
			cfg:  fileOTLP,
			env:  map[string]string{"OTEL_TRACES_EXPORTER": "none"},
			want: telemetry.Settings{
				TracesExporter: "none", OTLPEndpoint: "http://collector.file:4318", OTLPEndpointFrom: "telemetry.otlp_endpoint",
				OTLPProtocol: "http/protobuf", Sampler: "always_off", SamplerFrom: "telemetry.sampler",
			},
		},
		{
			name: "an endpoint variable wins over the file's none",
			cfg:  telemetry.Config{TracesExporter: "none"},
			env:  map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"},
			want: telemetry.Settings{
				TracesExporter: "otlp", OTLPEndpoint: "http://127.0.0.1:4318/v1/traces", OTLPEndpointFrom: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
				OTLPProtocol: "http/protobuf", Sampler: "parentbased_always_on", SamplerFrom: "default",
			},
		},
		{
			name: "a sampler variable takes the file's ratio when its own is unset",
			cfg:  telemetry.Config{SamplerArg: "0.1"},
			env:  map[string]string{"OTEL_TRACES_SAMPLER": "TraceIDRatio"},
			want: telemetry.Settings{
				TracesExporter: "none", OTLPEndpointFrom: "default", OTLPProtocol: "http/protobuf",
				Sampler: "traceidratio", SamplerArg: 0.1, SamplerFrom: "OTEL_TRACES_SAMPLER",
			},
		},
		{
			name: "a ratio sampler without a ratio samples everything",
			cfg:  telemetry.Config{Sampler: "parentbased_traceidratio"},
			want: telemetry.Settings{
				TracesExporter: "none", OTLPEndpointFrom: "default", OTLPProtocol: "http/protobuf",
				Sampler: "parentbased_traceidratio", SamplerArg: 1, SamplerFrom: "telemetry.sampler",
			},
		},
		{
			name: "an empty variable counts as unset",
			cfg:  telemetry.Config{Sampler: "always_on"},
			env:  map[string]string{"OTEL_TRACES_SAMPLER": ""},
			want: telemetry.Settings{
				TracesExporter: "none", OTLPEndpointFrom: "default", OTLPProtocol: "http/protobuf",
				Sampler: "always_on", SamplerFrom: "telemetry.sampler",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := tt.cfg.Resolve(os.LookupEnv)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if got != tt.want {
				t.Errorf("Resolve:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// An invalid value stops the process with the variable or key to fix.
func TestResolveNamesTheCulprit(t *testing.T) {
	tests := []struct {
		name string
		cfg  telemetry.Config
		env  map[string]string
		want string
	}{
		{name: "sampler variable", env: map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, want: "OTEL_TRACES_SAMPLER"},
		{name: "sampler key", cfg: telemetry.Config{Sampler: "sometimes"}, want: "telemetry.sampler"},
		{
			name: "ratio variable out of range",
			env:  map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
			want: "OTEL_TRACES_SAMPLER_ARG",
		},
		{name: "ratio key not a number", cfg: telemetry.Config{Sampler: "traceidratio", SamplerArg: "half"}, want: "telemetry.sampler_arg"},
		// strconv.ParseFloat reads NaN, which no range check catches.
		{name: "ratio key NaN", cfg: telemetry.Config{Sampler: "traceidratio", SamplerArg: "NaN"}, want: "telemetry.sampler_arg"},
		{name: "exporter variable", cfg: telemetry.Config{TracesExporter: "otlp"}, env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, want: "OTEL_TRACES_EXPORTER"},
		{name: "exporter list", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp,console"}, want: "OTEL_TRACES_EXPORTER"},
		{name: "exporter key", cfg: telemetry.Config{TracesExporter: "jaeger"}, want: "telemetry.traces_exporter"},
		{name: "protocol variable", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, want: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{name: "protocol key", cfg: telemetry.Config{OTLPProtocol: "udp"}, want: "telemetry.otlp_protocol"},
		{name: "endpoint without scheme", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4317"}, want: "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{name: "traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "grpc://x:4317"}, want: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{name: "endpoint key", cfg: telemetry.Config{OTLPEndpoint: "collector:4317"}, want: "telemetry.otlp_endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := tt.cfg.Resolve(os.LookupEnv)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want+": ") {
				t.Errorf("Resolve: %v, want an error starting with %q", err, tt.want+": ")
			}
		})
	}
}

// New refuses to start on an invalid variable rather than falling back
// silently, as the SDK alone would.
func TestNewRejectsInvalidSampler(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_sometimes")
	tel, err := telemetry.New(testCtx(t), telemetry.Config{}, testInfo, telemetry.WithLookup(os.LookupEnv))
	if err == nil {
		_ = tel.Shutdown(testCtx(t))
		t.Fatal("New accepted an invalid OTEL_TRACES_SAMPLER")
	}
	if !strings.Contains(err.Error(), "OTEL_TRACES_SAMPLER") {
		t.Errorf("New: %v, want the variable named", err)
	}
}

func TestSettingsString(t *testing.T) {
	s := telemetry.Settings{
		TracesExporter: "otlp", OTLPEndpoint: "http://c:4317", OTLPEndpointFrom: "OTEL_EXPORTER_OTLP_ENDPOINT",
		OTLPProtocol: "grpc", Sampler: "parentbased_traceidratio", SamplerArg: 0.25, SamplerFrom: "telemetry.sampler",
	}
	want := "traces=otlp otlp=grpc http://c:4317 (from OTEL_EXPORTER_OTLP_ENDPOINT) sampler=parentbased_traceidratio(0.25) (from telemetry.sampler)"
	if got := s.String(); got != want {
		t.Errorf("String:\n got %s\nwant %s", got, want)
	}
}
