package telemetry_test

import (
	"context"
	"os"
	"testing"

	"google.golang.org/grpc"

	"github.com/rampart-go/rampart/internal/telemetry"
)

// The logical span's own cost, without a network: sampled it records a
// span, unsampled it only creates IDs. Compare allocs/op between the two.
func BenchmarkLogicalSpan(b *testing.B) {
	for _, sampler := range []string{telemetry.SamplerAlwaysOn, telemetry.SamplerAlwaysOff} {
		b.Run(sampler, func(b *testing.B) {
			for _, v := range otelVars {
				b.Setenv(v, "")
			}
			tel, err := telemetry.New(context.Background(), telemetry.Config{Sampler: sampler}, testInfo, telemetry.WithLookup(os.LookupEnv))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
			intercept := tel.LogicalSpan("user")
			invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_ = intercept(ctx, "/user.v1.UserService/GetUser", nil, nil, nil, invoker)
			}
		})
	}
}
