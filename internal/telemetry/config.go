package telemetry

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The standard OpenTelemetry variables Resolve reads, through the lookup it
// is given. They win over Config so that one exported variable redirects
// every process, whatever its file says.
const (
	EnvTracesExporter        = "OTEL_TRACES_EXPORTER"
	EnvOTLPEndpoint          = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvOTLPTracesEndpoint    = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvOTLPProtocol          = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvOTLPTracesProtocol    = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvTracesSampler         = "OTEL_TRACES_SAMPLER"
	EnvTracesSamplerArg      = "OTEL_TRACES_SAMPLER_ARG"
	envSemconvStabilityOptIn = "OTEL_SEMCONV_STABILITY_OPT_IN"
)

// Trace exporters, as OTEL_TRACES_EXPORTER names them. "console" is the
// specification's name for stdout and is accepted as a synonym.
const (
	ExporterOTLP   = "otlp"
	ExporterStdout = "stdout"
	ExporterNone   = "none"
)

// OTLP protocols, as OTEL_EXPORTER_OTLP_PROTOCOL names them.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// Samplers, as OTEL_TRACES_SAMPLER names them.
const (
	SamplerAlwaysOn                = "always_on"
	SamplerAlwaysOff               = "always_off"
	SamplerTraceIDRatio            = "traceidratio"
	SamplerParentBasedAlwaysOn     = "parentbased_always_on"
	SamplerParentBasedAlwaysOff    = "parentbased_always_off"
	SamplerParentBasedTraceIDRatio = "parentbased_traceidratio"
)

// Config is the telemetry block of a service's configuration file. Each
// field has a standard OTEL_* variable that, when set and non-empty, wins
// over it (see Resolve). The zero Config exports no traces and samples with
// parentbased_always_on, so trace IDs still exist for logs.
type Config struct {
	// TracesExporter is otlp, stdout (or console) or none. Empty means otlp
	// when an OTLP endpoint is set, none otherwise. An endpoint variable
	// overrides it too, so one exported OTEL_EXPORTER_OTLP_ENDPOINT turns
	// export on whatever the file says; only OTEL_TRACES_EXPORTER beats that.
	TracesExporter string `yaml:"traces_exporter"`
	// OTLPEndpoint is the collector's base URL, http://host:port or
	// https://host:port, read like OTEL_EXPORTER_OTLP_ENDPOINT: over
	// http/protobuf, /v1/traces is appended. Empty means the exporter's
	// default, localhost:4317 (grpc) or localhost:4318 (http/protobuf).
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// OTLPProtocol is grpc or http/protobuf; empty means http/protobuf,
	// the specification's default.
	OTLPProtocol string `yaml:"otlp_protocol"`
	// Sampler is one of the OTEL_TRACES_SAMPLER names; empty means
	// parentbased_always_on, so a service follows its caller's decision.
	Sampler string `yaml:"sampler"`
	// SamplerArg is the ratio in [0,1] of the traceidratio samplers; empty
	// means 1.
	SamplerArg string `yaml:"sampler_arg"`
}

// Settings is the configuration in effect after Resolve: variables applied,
// defaults filled in, every value valid. The From fields name where a value
// came from (a variable or a telemetry.* key, or "default"), for the
// effective-configuration line a service logs at start.
type Settings struct {
	TracesExporter string
	// OTLPEndpoint is empty when the exporter's default applies.
	OTLPEndpoint     string
	OTLPEndpointFrom string
	OTLPProtocol     string
	Sampler          string
	// SamplerArg is the ratio of the traceidratio samplers, else 0.
	SamplerArg  float64
	SamplerFrom string
	// conv is the RPC attribute naming OTEL_SEMCONV_STABILITY_OPT_IN asks for.
	conv semconvMode
}

// String renders the settings for a log line.
func (s Settings) String() string {
	var b strings.Builder
	b.WriteString("traces=" + s.TracesExporter)
	if s.TracesExporter == ExporterOTLP {
		endpoint := s.OTLPEndpoint
		if endpoint == "" {
			endpoint = "(exporter default)"
		}
		fmt.Fprintf(&b, " otlp=%s %s (from %s)", s.OTLPProtocol, endpoint, s.OTLPEndpointFrom)
	}
	fmt.Fprintf(&b, " sampler=%s", s.Sampler)
	if isRatio(s.Sampler) {
		fmt.Fprintf(&b, "(%g)", s.SamplerArg)
	}
	fmt.Fprintf(&b, " (from %s)", s.SamplerFrom)
	return b.String()
}

// Resolve applies the OTEL_* variables lookup finds (os.LookupEnv in a
// service, through internal/conf; nil finds none) over c, fills in defaults
// and validates the result. An invalid value is reported with the variable or
// the telemetry.* key it came from, so the process stops naming what to fix.
//
// Each field is resolved on its own: OTEL_TRACES_SAMPLER=traceidratio with
// only telemetry.sampler_arg set uses the file's ratio.
func (c Config) Resolve(lookup func(string) (string, bool)) (Settings, error) {
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	pick := func(fileValue, key string, vars ...string) (value, from string) {
		return pickFrom(lookup, fileValue, key, vars...)
	}
	s := Settings{conv: readSemconvMode(lookup)}

	endpoint, endpointFrom := pick(c.OTLPEndpoint, "telemetry.otlp_endpoint", EnvOTLPEndpoint, EnvOTLPTracesEndpoint)
	if endpoint != "" {
		if err := checkEndpoint(endpoint); err != nil {
			return Settings{}, fmt.Errorf("%s: %w", endpointFrom, err)
		}
		s.OTLPEndpoint, s.OTLPEndpointFrom = endpoint, endpointFrom
	} else {
		s.OTLPEndpointFrom = "default"
	}

	exporter, from := pick(c.TracesExporter, "telemetry.traces_exporter", EnvTracesExporter)
	if from != EnvTracesExporter && endpointFrom != "telemetry.otlp_endpoint" && endpoint != "" {
		// An endpoint variable is a request to send traces there, and
		// variables win over the file: it overrides traces_exporter: none.
		exporter = ""
	}
	switch strings.ToLower(exporter) {
	case "":
		// Saying where traces go is enough to send them there.
		s.TracesExporter = ExporterNone
		if endpoint != "" {
			s.TracesExporter = ExporterOTLP
		}
	case ExporterOTLP:
		s.TracesExporter = ExporterOTLP
	case ExporterStdout, "console":
		s.TracesExporter = ExporterStdout
	case ExporterNone:
		s.TracesExporter = ExporterNone
	default:
		return Settings{}, fmt.Errorf("%s: unknown trace exporter %q (want otlp, stdout, console or none)", from, exporter)
	}

	protocol, from := pick(c.OTLPProtocol, "telemetry.otlp_protocol", EnvOTLPProtocol, EnvOTLPTracesProtocol)
	switch strings.ToLower(protocol) {
	case "", ProtocolHTTPProtobuf:
		s.OTLPProtocol = ProtocolHTTPProtobuf
	case ProtocolGRPC:
		s.OTLPProtocol = ProtocolGRPC
	default:
		return Settings{}, fmt.Errorf("%s: unsupported OTLP protocol %q (want grpc or http/protobuf)", from, protocol)
	}

	sampler, samplerFrom := pick(c.Sampler, "telemetry.sampler", EnvTracesSampler)
	s.Sampler = strings.ToLower(sampler)
	s.SamplerFrom = samplerFrom
	switch s.Sampler {
	case "":
		s.Sampler, s.SamplerFrom = SamplerParentBasedAlwaysOn, "default"
	case SamplerAlwaysOn, SamplerAlwaysOff, SamplerParentBasedAlwaysOn, SamplerParentBasedAlwaysOff:
	case SamplerTraceIDRatio, SamplerParentBasedTraceIDRatio:
		arg, argFrom := pick(c.SamplerArg, "telemetry.sampler_arg", EnvTracesSamplerArg)
		ratio, err := parseRatio(arg)
		if err != nil {
			return Settings{}, fmt.Errorf("%s: %w", argFrom, err)
		}
		s.SamplerArg = ratio
	default:
		return Settings{}, fmt.Errorf("%s: unknown sampler %q (want always_on, always_off, traceidratio, "+
			"parentbased_always_on, parentbased_always_off or parentbased_traceidratio)", samplerFrom, sampler)
	}
	return s, nil
}

// pickFrom returns the value of the last non-empty variable in vars, or else
// the file's value, with the name of its source. Later variables are the
// more specific ones (the TRACES_ variants), which the specification lets
// win over the generic ones.
func pickFrom(lookup func(string) (string, bool), fileValue, key string, vars ...string) (value, from string) {
	for i := len(vars) - 1; i >= 0; i-- {
		if v, _ := lookup(vars[i]); strings.TrimSpace(v) != "" {
			v = strings.TrimSpace(v)
			return v, vars[i]
		}
	}
	return strings.TrimSpace(fileValue), key
}

// checkEndpoint insists on a URL with a scheme: "localhost:4317" parses as
// scheme "localhost" and would send spans nowhere without a word.
func checkEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("invalid OTLP endpoint %q: %w", endpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid OTLP endpoint %q: want http://host:port or https://host:port", endpoint)
	}
	return nil
}

// parseRatio reads a traceidratio argument; empty means 1, as the
// specification says.
func parseRatio(arg string) (float64, error) {
	if arg == "" {
		return 1, nil
	}
	r, err := strconv.ParseFloat(arg, 64)
	if err != nil || !(r >= 0 && r <= 1) { // also rejects NaN, which ParseFloat reads
		return 0, fmt.Errorf("invalid sampler ratio %q (want a number in [0,1])", arg)
	}
	return r, nil
}

func isRatio(sampler string) bool {
	return sampler == SamplerTraceIDRatio || sampler == SamplerParentBasedTraceIDRatio
}

// newSampler builds the sampler the settings name.
func (s Settings) newSampler() sdktrace.Sampler {
	switch s.Sampler {
	case SamplerAlwaysOn:
		return sdktrace.AlwaysSample()
	case SamplerAlwaysOff:
		return sdktrace.NeverSample()
	case SamplerTraceIDRatio:
		return sdktrace.TraceIDRatioBased(s.SamplerArg)
	case SamplerParentBasedAlwaysOff:
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case SamplerParentBasedTraceIDRatio:
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(s.SamplerArg))
	default:
		return sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
}
