package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rampart-go/rampart/internal/rpc"
)

// ReasonBodyTooLarge is the reason of the 413 answer to a body over
// server.gateway.max_body_bytes.
const ReasonBodyTooLarge = "BODY_TOO_LARGE"

// ErrorBody is every error answer of the gateway, as JSON. Code repeats the
// HTTP status and Status names the gRPC code ("INVALID_ARGUMENT"), so a
// client can act on either. Reason and Metadata come from the status's
// google.rpc.ErrorInfo, where Rampart and Kratos put them; a status without
// one (an error the gateway raises itself: a malformed body, an unknown
// route) has its Status as Reason. Field is Metadata["field"], the request
// field a validation or domain error is about.
type ErrorBody struct {
	Code     int               `json:"code"`
	Status   string            `json:"status"`
	Reason   string            `json:"reason"`
	Message  string            `json:"message"`
	Field    string            `json:"field,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// writeError is the mux's error handler: it answers err, a gRPC status from
// the call or one grpc-gateway raised before it (a body or parameter that
// does not decode), with the status's HTTP code and an ErrorBody.
func writeError(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if b, ok := r.Body.(*limitedBody); ok && b.exceeded {
		// The decoder's error says only that the body ended early.
		writeTooLarge(w, b.limit)
		return
	}
	code := 0
	if hse, ok := errors.AsType[*runtime.HTTPStatusError](err); ok {
		// grpc-gateway's refusal of a malformed path: not a status, but an
		// HTTP code to keep.
		code, err = hse.HTTPStatus, status.Error(codes.InvalidArgument, hse.Err.Error())
	}
	st := status.Convert(err)
	if code == 0 {
		code = runtime.HTTPStatusFromCode(st.Code())
	}
	if st.Code() == codes.ResourceExhausted || st.Code() == codes.Unavailable {
		if md, ok := runtime.ServerMetadataFromContext(ctx); ok {
			if after, ok := retryAfter(md); ok {
				w.Header().Set("Retry-After", after)
			}
		}
	}
	writeStatus(w, code, st)
}

// retryAfter is the Retry-After header for the server's pushback: its wait
// in whole seconds, rounded up so a client never comes back early, at least
// 1. There is none without a positive pushback; a negative one asks the
// caller not to retry at all (gRFC A6).
func retryAfter(md runtime.ServerMetadata) (string, bool) {
	wait, pushedBack, ok := rpc.Pushback(md.TrailerMD)
	if !ok || !pushedBack || wait <= 0 {
		return "", false
	}
	secs := max(1, (wait+time.Second-1)/time.Second)
	return strconv.FormatInt(int64(secs), 10), true
}

// writeRoutingError is the mux's routing error handler: no route for the
// path (404), a route for the path but not for the method (405, with the
// Allow header RFC 9110 §15.5.6 requires, listing the methods the path has
// routes for), or a path that is not one (400).
func (p *routeProbe) writeRoutingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	var st *status.Status
	switch httpStatus {
	case http.StatusNotFound:
		st = status.Newf(codes.NotFound, "no route for %s %s", r.Method, r.URL.Path)
	case http.StatusMethodNotAllowed:
		allow := p.allowed(r)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		st = status.Newf(codes.Unimplemented, "method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", "))
	default:
		st = status.Newf(codes.InvalidArgument, "malformed request path %q", r.URL.Path)
		httpStatus = http.StatusBadRequest
	}
	writeStatus(w, httpStatus, st)
}

// writeTooLarge answers a body over limit bytes: 413, with the status a
// request that cannot be taken as it is has (InvalidArgument), not the
// ResourceExhausted of gRPC's own size limit, which callers retry.
func writeTooLarge(w http.ResponseWriter, limit int64) {
	err := rpc.Error(codes.InvalidArgument, ReasonBodyTooLarge, fmt.Sprintf("request body is larger than %d bytes", limit), nil)
	writeStatus(w, http.StatusRequestEntityTooLarge, status.Convert(err))
}

// writeStatus writes st as an ErrorBody with HTTP status code.
func writeStatus(w http.ResponseWriter, code int, st *status.Status) {
	info := rpc.Info(st)
	body := ErrorBody{
		Code:     code,
		Status:   rpc.CodeName(st.Code()),
		Reason:   info.GetReason(),
		Message:  st.Message(),
		Field:    info.GetMetadata()["field"],
		Metadata: info.GetMetadata(),
	}
	if body.Reason == "" {
		body.Reason = body.Status
	}
	// Strings and a map of strings: Marshal cannot fail.
	buf, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(buf, '\n'))
}
