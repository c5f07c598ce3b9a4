package rpc

import (
	"strconv"

	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error returns the status error with code and msg that carries an
// ErrorInfo detail with reason and md: the form every failure Rampart
// raises takes, so a caller reads the reason with Reason or Kratos'
// errors.Reason, and a server relaying it keeps it. Should the detail fail
// to attach (it cannot for an error code), the status goes without it
// rather than losing the code.
func Error(code codes.Code, reason, msg string, md map[string]string) error {
	st := status.New(code, msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Metadata: md}); err == nil {
		st = withInfo
	}
	return st.Err()
}

// Reason is the reason of the status's first ErrorInfo detail, or "".
func Reason(st *status.Status) string { return Info(st).GetReason() }

// Info is the status's first ErrorInfo detail, or nil: where Rampart and
// Kratos put an error's reason and its metadata (the field, for one).
func Info(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// CodeName is code as google.rpc.Code and the OpenTelemetry conventions
// spell it ("UNAVAILABLE"), not as grpc-go's String() does ("Unavailable");
// a code outside the enum reads CODE(n).
func CodeName(code codes.Code) string {
	if name, ok := rpccode.Code_name[int32(code)]; ok {
		return name
	}
	return "CODE(" + strconv.FormatUint(uint64(code), 10) + ")"
}

// IsCircuitOpen reports whether err, wrapped or not, is a breaker's
// rejection: Unavailable with reason CIRCUIT_OPEN, raised by this client's
// breaker or relayed by a server whose own breaker rejected the call.
func IsCircuitOpen(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Unavailable && Reason(st) == ReasonCircuitOpen
}
