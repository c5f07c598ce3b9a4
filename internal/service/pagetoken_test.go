package service_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/rampart-go/rampart/internal/service"
)

func TestPageTokenRoundTrip(t *testing.T) {
	for _, after := range []int64{1, 127, 128, 1 << 40, 1<<63 - 1} {
		token := service.EncodePageToken("user_id=a", after)
		got, err := service.DecodePageToken(token, "user_id=a")
		if err != nil || got != after {
			t.Fatalf("DecodePageToken(EncodePageToken(%d)) = %d, %v", after, got, err)
		}
		if strings.ContainsAny(token, "+/=") {
			t.Fatalf("token %q is not URL-safe", token)
		}
	}
	if got, err := service.DecodePageToken("", "user_id=a"); got != 0 || err != nil {
		t.Fatalf("empty token = %d, %v; want the first page", got, err)
	}
}

// Every change of one bit, and every shorter or longer token, is refused,
// as is a good token for other filters.
func TestPageTokenRefusesWhatItDidNotIssue(t *testing.T) {
	token := service.EncodePageToken("user_id=a", 300)
	raw := []byte(token)
	var bad []string
	for i := range raw {
		for bit := range 6 {
			b := append([]byte(nil), raw...)
			b[i] ^= 1 << bit
			if string(b) != token {
				bad = append(bad, string(b))
			}
		}
	}
	bad = append(bad, token[:len(token)-1], token+"A", "AAAA", "not a token")
	for _, tok := range bad {
		if got, err := service.DecodePageToken(tok, "user_id=a"); !errors.Is(err, service.ErrPageToken) {
			t.Fatalf("DecodePageToken(%q) = %d, %v; want ErrPageToken", tok, got, err)
		}
	}
	_, err := service.DecodePageToken(token, "user_id=b")
	if !errors.Is(err, service.ErrPageToken) || !strings.Contains(err.Error(), "other filters") {
		t.Fatalf("token for other filters: %v, want ErrPageToken naming the filters", err)
	}
}
