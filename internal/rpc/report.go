package rpc

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// AttemptReport is where gRPC writes what one attempt of a call learnt:
// the instance it reached and the trailer it got. Every client interceptor
// that needs them (retry for the pushback and the tried instances, outlier
// ejection, the attempt span) would otherwise ask gRPC for them with call
// options of its own, one allocation each per attempt: the outermost that
// asks makes a report, and the ones inside find it in their call options
// (ReportIn) and read it after the attempt.
//
// The one who makes a report owns it: it calls Reset before each attempt,
// so a report never holds an earlier attempt's instance, and it must not
// share one between attempts that run at once.
type AttemptReport struct {
	// Peer is the instance the attempt reached; Addr is nil when it
	// reached none.
	Peer peer.Peer
	// Trailer is the attempt's trailer.
	Trailer metadata.MD

	peerOpt reportPeer
}

// reportPeer is the report's peer option: gRPC fills it as a
// grpc.PeerCallOption, and ReportIn knows the report by it.
type reportPeer struct {
	grpc.PeerCallOption
	r *AttemptReport
}

// Options returns the two call options that have gRPC fill r. Neither
// allocates as a grpc.CallOption: the peer's is a pointer into r, the
// trailer's gRPC's own, one pointer wide.
func (r *AttemptReport) Options() (peerOpt, trailerOpt grpc.CallOption) {
	r.peerOpt = reportPeer{PeerCallOption: grpc.PeerCallOption{PeerAddr: &r.Peer}, r: r}
	return &r.peerOpt, grpc.Trailer(&r.Trailer)
}

// Reset clears what the previous attempt wrote.
func (r *AttemptReport) Reset() { r.Peer, r.Trailer = peer.Peer{}, nil }

// ReportIn returns the report whose options are among opts, or nil.
func ReportIn(opts []grpc.CallOption) *AttemptReport {
	for i := len(opts) - 1; i >= 0; i-- {
		if p, ok := opts[i].(*reportPeer); ok {
			return p.r
		}
	}
	return nil
}
