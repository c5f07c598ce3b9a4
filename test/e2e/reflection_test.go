package e2e

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
)

// TestReflection does what `grpcurl list` and `grpcurl describe` do against
// one instance of each service, directly by address.
func TestReflection(t *testing.T) {
	ctx := devstacktest.Context(t, 60*time.Second)
	s := startStack(t, ctx, 1, 1)

	tests := []struct {
		instance string
		service  string // fully qualified
		method   string
		level    descriptorpb.MethodOptions_IdempotencyLevel
	}{
		{"user", "user.v1.UserService", "GetUser", descriptorpb.MethodOptions_NO_SIDE_EFFECTS},
		{"order", "order.v1.OrderService", "CreateOrder", descriptorpb.MethodOptions_IDEMPOTENT},
	}
	for _, tt := range tests {
		t.Run(tt.instance, func(t *testing.T) {
			r, err := devstack.Reflect(ctx, s.Instances(tt.instance)[0].GRPCAddr, tt.service,
				devstacktest.Credentials(devstacktest.Certificates(t, s), tt.instance))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{tt.service, "grpc.health.v1.Health"} {
				if !slices.Contains(r.Services, want) {
					t.Errorf("services %v do not include %s", r.Services, want)
				}
			}
			d, err := r.Files.FindDescriptorByName(protoreflect.FullName(tt.service + "." + tt.method))
			if err != nil {
				t.Fatalf("method %s.%s in the descriptors reflection returned: %v", tt.service, tt.method, err)
			}
			opts, _ := d.(protoreflect.MethodDescriptor).Options().(*descriptorpb.MethodOptions)
			if got := opts.GetIdempotencyLevel(); got != tt.level {
				t.Errorf("%s.%s idempotency_level = %v, want %v", tt.service, tt.method, got, tt.level)
			}
		})
	}
}
