package retry

import (
	"maps"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/rampart-go/rampart/internal/rpc"
)

// safeCache maps a full method to its IsSafeToRetry answer. Reads are
// lock-free on an immutable map; a miss copies the map under safeMu, which
// happens once per method for the life of the process.
var (
	safeCache atomic.Pointer[map[string]bool]
	safeMu    sync.Mutex
)

// IsSafeToRetry reports whether the method ("/pkg.Service/Method") is
// declared in its proto with idempotency_level NO_SIDE_EFFECTS or IDEMPOTENT.
// The declaration is read from protoregistry.GlobalFiles, so the method's
// generated package must be linked in; a method it does not know is not safe.
// Answers are cached per method.
func IsSafeToRetry(fullMethod string) bool {
	if m := safeCache.Load(); m != nil {
		if safe, ok := (*m)[fullMethod]; ok {
			return safe
		}
	}
	safe := lookupSafe(fullMethod)

	safeMu.Lock()
	defer safeMu.Unlock()
	next := map[string]bool{}
	if old := safeCache.Load(); old != nil {
		next = maps.Clone(*old)
	}
	next[fullMethod] = safe
	safeCache.Store(&next)
	return safe
}

// lookupSafe reads the method's idempotency level from the registry.
func lookupSafe(fullMethod string) bool {
	// "/pkg.Service/Method" names the descriptor "pkg.Service.Method".
	svc, meth, ok := rpc.SplitMethod(fullMethod)
	if !ok {
		return false
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc + "." + meth))
	if err != nil {
		return false
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return false
	}
	opts, ok := md.Options().(*descriptorpb.MethodOptions)
	if !ok {
		return false
	}
	switch opts.GetIdempotencyLevel() {
	case descriptorpb.MethodOptions_NO_SIDE_EFFECTS, descriptorpb.MethodOptions_IDEMPOTENT:
		return true
	default:
		return false
	}
}
