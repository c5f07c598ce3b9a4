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

// levelCache maps a full method to its declared idempotency level. Reads are
// lock-free on an immutable map; a miss copies the map under safeMu, which
// happens once per method for the life of the process.
var (
	levelCache atomic.Pointer[map[string]descriptorpb.MethodOptions_IdempotencyLevel]
	levelMu    sync.Mutex
)

// IsSafeToRetry reports whether the method ("/pkg.Service/Method") is
// declared in its proto with idempotency_level NO_SIDE_EFFECTS or IDEMPOTENT.
// The declaration is read from protoregistry.GlobalFiles, so the method's
// generated package must be linked in; a method it does not know is not safe.
// Answers are cached per method.
func IsSafeToRetry(fullMethod string) bool {
	switch idempotencyLevel(fullMethod) {
	case descriptorpb.MethodOptions_NO_SIDE_EFFECTS, descriptorpb.MethodOptions_IDEMPOTENT:
		return true
	default:
		return false
	}
}

// HasNoSideEffects reports whether the method is declared with
// idempotency_level NO_SIDE_EFFECTS, the one level that may be hedged: an
// IDEMPOTENT method may be repeated, but not run twice at the same time.
// The same registry and cache as IsSafeToRetry.
func HasNoSideEffects(fullMethod string) bool {
	return idempotencyLevel(fullMethod) == descriptorpb.MethodOptions_NO_SIDE_EFFECTS
}

// idempotencyLevel returns the method's declared level, cached.
func idempotencyLevel(fullMethod string) descriptorpb.MethodOptions_IdempotencyLevel {
	if m := levelCache.Load(); m != nil {
		if level, ok := (*m)[fullMethod]; ok {
			return level
		}
	}
	level := lookupLevel(fullMethod)

	levelMu.Lock()
	defer levelMu.Unlock()
	next := map[string]descriptorpb.MethodOptions_IdempotencyLevel{}
	if old := levelCache.Load(); old != nil {
		next = maps.Clone(*old)
	}
	next[fullMethod] = level
	levelCache.Store(&next)
	return level
}

// lookupLevel reads the method's idempotency level from the registry; a
// method it does not know is IDEMPOTENCY_UNKNOWN.
func lookupLevel(fullMethod string) descriptorpb.MethodOptions_IdempotencyLevel {
	// "/pkg.Service/Method" names the descriptor "pkg.Service.Method".
	svc, meth, ok := rpc.SplitMethod(fullMethod)
	if !ok {
		return descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc + "." + meth))
	if err != nil {
		return descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN
	}
	opts, ok := md.Options().(*descriptorpb.MethodOptions)
	if !ok {
		return descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN
	}
	return opts.GetIdempotencyLevel()
}
