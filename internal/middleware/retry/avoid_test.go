package retry

import (
	"context"
	"testing"

	"github.com/go-kratos/kratos/v2/selector"
)

func nodes(addrs ...string) []selector.Node {
	out := make([]selector.Node, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, selector.NewNode("grpc", a, nil))
	}
	return out
}

func addrsOf(ns []selector.Node) []string {
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		out = append(out, n.Address())
	}
	return out
}

func TestAvoidTried(t *testing.T) {
	filter := AvoidTried()
	all := nodes("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")

	if got := filter(context.Background(), all); len(got) != 3 {
		t.Fatalf("first attempt: %v, want every node", addrsOf(got))
	}
	tr := &tried{}
	ctx := context.WithValue(context.Background(), triedKey{}, tr)
	tr.add("127.0.0.1:2")
	if got := addrsOf(filter(ctx, all)); len(got) != 2 || got[0] != "127.0.0.1:1" || got[1] != "127.0.0.1:3" {
		t.Fatalf("after a failure on :2: %v, want :1 and :3", got)
	}
	tr.add("127.0.0.1:1")
	tr.add("127.0.0.1:1")
	if got := addrsOf(filter(ctx, all)); len(got) != 1 || got[0] != "127.0.0.1:3" {
		t.Fatalf("after failures on :1 and :2: %v, want :3", got)
	}
	tr.add("127.0.0.1:3")
	if got := filter(ctx, all); len(got) != 3 {
		t.Fatalf("every node failed: %v, want all of them back", addrsOf(got))
	}
}
