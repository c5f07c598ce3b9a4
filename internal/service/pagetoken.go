package service

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// Page tokens (AIP-158's page_token and next_page_token) carry a keyset
// position between a caller's pages: the store sequence number of the last
// item returned, and a digest of the filters the list was asked with (for
// ListOrders, its user_id), so a token cannot be replayed against other
// filters.
//
// A token is base64url of: a version byte, the position as a uvarint, 8
// bytes of SHA-256 over the filters, and 8 bytes of SHA-256 over all of that
// with a fixed prefix as a checksum. It is opaque to callers (they get no
// promise about its content) but not secret, and the checksum is not a
// secret-keyed MAC: anyone who reads this code can mint a token. That is
// enough because a token grants nothing. The handler still filters by the
// request's own fields, so a forged token can only move the start of a list
// the caller may read anyway; what the checksum buys is that an altered,
// truncated or mistyped token, or one from another list, is refused with
// InvalidArgument instead of silently starting elsewhere. An HMAC would
// also need a secret shared by every instance, rotated together, for no
// gain in what a caller can read. Tokens do not expire: a position stays
// meaningful as long as the rows do.

// ErrPageToken means a page_token is not one this service issued for the
// request's filters. Services map it to InvalidArgument on page_token.
var ErrPageToken = errors.New("invalid page_token")

const (
	tokenVersion   = 1
	digestLen      = 8
	tokenChecksum  = "rampart page token v1\x00"
	maxTokenLength = 1 + binary.MaxVarintLen64 + 2*digestLen
)

// EncodePageToken returns the token for the page after position after of
// the list selected by filters; filters is the caller's canonical spelling
// of the request's filters (for example "user_id=" + id). after must be
// positive: a list with no next page has no token.
func EncodePageToken(filters string, after int64) string {
	buf := make([]byte, 0, maxTokenLength)
	buf = append(buf, tokenVersion)
	buf = binary.AppendUvarint(buf, uint64(after))
	buf = append(buf, digest(filters)...)
	buf = append(buf, checksum(buf)...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

// DecodePageToken returns the position token holds, or 0 for an empty
// token (the first page). A token that does not decode, fails its checksum
// or was issued for other filters is ErrPageToken, with the reason.
func DecodePageToken(token, filters string) (int64, error) {
	if token == "" {
		return 0, nil
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(raw) < 1+1+2*digestLen || len(raw) > maxTokenLength || raw[0] != tokenVersion {
		return 0, fmt.Errorf("%w: not a token this service issued", ErrPageToken)
	}
	body, sum := raw[:len(raw)-digestLen], raw[len(raw)-digestLen:]
	if !bytes.Equal(sum, checksum(body)) {
		return 0, fmt.Errorf("%w: altered or truncated", ErrPageToken)
	}
	after, n := binary.Uvarint(body[1:])
	if n <= 0 || 1+n+digestLen != len(body) || after == 0 || after > 1<<63-1 {
		return 0, fmt.Errorf("%w: not a token this service issued", ErrPageToken)
	}
	if !bytes.Equal(body[1+n:], digest(filters)) {
		return 0, fmt.Errorf("%w: issued for other filters than this request's", ErrPageToken)
	}
	return int64(after), nil
}

func digest(filters string) []byte {
	sum := sha256.Sum256([]byte(filters))
	return sum[:digestLen]
}

func checksum(body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(tokenChecksum))
	h.Write(body)
	return h.Sum(nil)[:digestLen]
}
