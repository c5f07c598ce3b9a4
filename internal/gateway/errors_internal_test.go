package gateway

import (
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/metadata"

	"github.com/rampart-go/rampart/internal/rpc"
)

// TestRetryAfter: the pushback in whole seconds, rounded up and at least
// 1, only for a positive pushback the client may honour.
func TestRetryAfter(t *testing.T) {
	tests := []struct {
		trailer metadata.MD
		want    string
	}{
		{metadata.Pairs(rpc.PushbackTrailer, "1"), "1"},
		{metadata.Pairs(rpc.PushbackTrailer, "999"), "1"},
		{metadata.Pairs(rpc.PushbackTrailer, "1000"), "1"},
		{metadata.Pairs(rpc.PushbackTrailer, "1001"), "2"},
		{metadata.Pairs(rpc.PushbackTrailer, "2500"), "3"},
		{metadata.Pairs(rpc.PushbackTrailer, "0"), ""},
		{metadata.Pairs(rpc.PushbackTrailer, "-1"), ""},
		{metadata.Pairs(rpc.PushbackTrailer, "soon"), ""},
		{metadata.Pairs(rpc.PushbackTrailer, "100", rpc.PushbackTrailer, "200"), ""},
		{nil, ""},
	}
	for _, tt := range tests {
		got, ok := retryAfter(runtime.ServerMetadata{TrailerMD: tt.trailer})
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("retryAfter(%v) = %q, %v; want %q", tt.trailer, got, ok, tt.want)
		}
	}
}
