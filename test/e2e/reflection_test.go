package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// TestReflection does what `grpcurl list` and `grpcurl describe` do against
// one instance of each service, directly by address.
func TestReflection(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
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
			addr := s.Instances(tt.instance)[0].GRPCAddr
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(sctx)
			if err != nil {
				t.Fatalf("reflection stream to %s: %v", addr, err)
			}
			defer func() { _ = stream.CloseSend() }()

			list := reflect(t, stream, &rpb.ServerReflectionRequest{
				MessageRequest: &rpb.ServerReflectionRequest_ListServices{ListServices: "*"},
			}).GetListServicesResponse()
			var names []string
			for _, svc := range list.GetService() {
				names = append(names, svc.GetName())
			}
			for _, want := range []string{tt.service, "grpc.health.v1.Health"} {
				if !slices.Contains(names, want) {
					t.Errorf("services %v do not include %s", names, want)
				}
			}

			files := reflect(t, stream, &rpb.ServerReflectionRequest{
				MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: tt.service},
			}).GetFileDescriptorResponse()
			m := findMethod(t, files.GetFileDescriptorProto(), tt.service, tt.method)
			if m == nil {
				t.Fatalf("no method %s.%s in the descriptors reflection returned", tt.service, tt.method)
			}
			if got := m.GetOptions().GetIdempotencyLevel(); got != tt.level {
				t.Errorf("%s.%s idempotency_level = %v, want %v", tt.service, tt.method, got, tt.level)
			}
		})
	}
}

// reflect sends one request on the stream and returns its answer, failing
// the test on an error answer.
func reflect(t *testing.T, stream rpb.ServerReflection_ServerReflectionInfoClient, req *rpb.ServerReflectionRequest) *rpb.ServerReflectionResponse {
	t.Helper()
	if err := stream.Send(req); err != nil {
		t.Fatalf("reflection send: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection recv: %v", err)
	}
	if e := resp.GetErrorResponse(); e != nil {
		t.Fatalf("reflection error %d: %s", e.GetErrorCode(), e.GetErrorMessage())
	}
	return resp
}

// findMethod looks for service.method among serialized file descriptors.
func findMethod(t *testing.T, files [][]byte, service, method string) *descriptorpb.MethodDescriptorProto {
	t.Helper()
	for _, raw := range files {
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(raw, fd); err != nil {
			t.Fatalf("file descriptor: %v", err)
		}
		for _, svc := range fd.GetService() {
			if fd.GetPackage()+"."+svc.GetName() != service {
				continue
			}
			for _, m := range svc.GetMethod() {
				if m.GetName() == method {
					return m
				}
			}
		}
	}
	return nil
}
