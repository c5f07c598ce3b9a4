package gateway

import (
	"errors"
	"io"
	"net/http"
)

// limitBody caps every request body at limit bytes. A declared length over
// it is answered 413 before anything is read; a body that turns out longer
// (chunked, or lying about its length) stops at the limit, and writeError
// answers 413 when the handler's decoding fails on it. http.MaxBytesReader
// also makes the server close the connection after the answer instead of
// reading the rest.
func limitBody(next http.Handler, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			writeTooLarge(w, limit)
			return
		}
		r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, limit), limit: limit}
		next.ServeHTTP(w, r)
	})
}

// limitedBody is a body read through http.MaxBytesReader that remembers
// whether the limit was hit: the generated handlers turn a decoding error
// into a status with %v, which loses the *http.MaxBytesError, and the
// answer must still be 413, not 400.
type limitedBody struct {
	io.ReadCloser
	limit    int64
	exceeded bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		b.exceeded = true
	}
	return n, err
}
