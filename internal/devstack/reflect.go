package devstack

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Reflection is what one server said about itself through gRPC server
// reflection, the way grpcurl asks: the services it lists, and the
// descriptors of the file that defines the symbol asked about.
type Reflection struct {
	Services []string
	Files    *protoregistry.Files
}

// Reflect asks the server at addr, by address and without any generated
// code, for its services and for the file (with its imports) defining
// symbol, e.g. "payment.v1.PaymentService". It dials in plaintext unless
// opts say otherwise (an mtls instance wants transport credentials).
func Reflect(ctx context.Context, addr, symbol string, opts ...grpc.DialOption) (*Reflection, error) {
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("reflection stream to %s: %w", addr, err)
	}
	defer func() { _ = stream.CloseSend() }()
	ask := func(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
		if sendErr := stream.Send(req); sendErr != nil {
			return nil, fmt.Errorf("reflection send to %s: %w", addr, sendErr)
		}
		resp, recvErr := stream.Recv()
		if recvErr != nil {
			return nil, fmt.Errorf("reflection recv from %s: %w", addr, recvErr)
		}
		if e := resp.GetErrorResponse(); e != nil {
			return nil, fmt.Errorf("reflection error from %s: %d %s", addr, e.GetErrorCode(), e.GetErrorMessage())
		}
		return resp, nil
	}

	out := &Reflection{}
	list, err := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{ListServices: "*"}})
	if err != nil {
		return nil, err
	}
	for _, svc := range list.GetListServicesResponse().GetService() {
		out.Services = append(out.Services, svc.GetName())
	}
	files, err := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol}})
	if err != nil {
		return nil, err
	}
	set := &descriptorpb.FileDescriptorSet{}
	for _, raw := range files.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := &descriptorpb.FileDescriptorProto{}
		if err = proto.Unmarshal(raw, fd); err != nil {
			return nil, fmt.Errorf("file descriptor from %s: %w", addr, err)
		}
		set.File = append(set.File, fd)
	}
	if out.Files, err = protodesc.NewFiles(set); err != nil {
		return nil, fmt.Errorf("descriptors from %s: %w", addr, err)
	}
	return out, nil
}
