package rpc_test

import (
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/rampart-go/rampart/internal/rpc"
)

func TestWithAttempt(t *testing.T) {
	caller := metadata.AppendToOutgoingContext(testCtx(t), "x-other", "kept")
	for _, attempt := range []int{1, 2, 5} {
		t.Run(strconv.Itoa(attempt), func(t *testing.T) {
			md, _ := metadata.FromOutgoingContext(rpc.WithAttempt(caller, attempt))
			if got, want := md.Get(rpc.AttemptHeader), []string{strconv.Itoa(attempt)}; !slices.Equal(got, want) {
				t.Fatalf("%s = %q, want %q", rpc.AttemptHeader, got, want)
			}
			if got := md.Get("x-other"); !slices.Equal(got, []string{"kept"}) {
				t.Fatalf("caller's metadata = %q, want kept", got)
			}
		})
	}
}

// What WithAttempt writes, Attempt reads; anything else is a first attempt.
func TestAttempt(t *testing.T) {
	tests := []struct {
		name   string
		header []string // values of AttemptHeader, nil for none
		want   int
	}{
		{"no header", nil, 1},
		{"first", []string{"1"}, 1},
		{"second", []string{"2"}, 2},
		{"fifth", []string{"5"}, 5},
		{"zero", []string{"0"}, 1},
		{"negative", []string{"-3"}, 1},
		{"malformed", []string{"two"}, 1},
		{"empty", []string{""}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kv []string
			for _, v := range tt.header {
				kv = append(kv, rpc.AttemptHeader, v)
			}
			if got := rpc.Attempt(serverCtx(t, "/user.v1.UserService/GetUser", kv...)); got != tt.want {
				t.Fatalf("Attempt = %d, want %d", got, tt.want)
			}
		})
	}
	t.Run("no transport", func(t *testing.T) {
		if got := rpc.Attempt(testCtx(t)); got != 1 {
			t.Fatalf("Attempt = %d, want 1", got)
		}
	})
}

func TestPushback(t *testing.T) {
	tests := []struct {
		name           string
		values         []string
		wantWait       time.Duration
		wantPushedBack bool
		wantOK         bool
	}{
		{"none", nil, 0, false, true},
		{"zero", []string{"0"}, 0, true, true},
		{"250 ms", []string{"250"}, 250 * time.Millisecond, true, true},
		{"longer than a Duration holds", []string{strconv.FormatInt(math.MaxInt64, 10)}, time.Duration(math.MaxInt64/int64(time.Millisecond)) * time.Millisecond, true, true},
		{"do not retry", []string{"-1"}, 0, false, false},
		{"malformed", []string{"soon"}, 0, false, false},
		{"fractional", []string{"1.5"}, 0, false, false},
		{"repeated", []string{"10", "20"}, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trailer := metadata.MD{}
			for _, v := range tt.values {
				trailer.Append(rpc.PushbackTrailer, v)
			}
			wait, pushedBack, ok := rpc.Pushback(trailer)
			if wait != tt.wantWait || pushedBack != tt.wantPushedBack || ok != tt.wantOK {
				t.Fatalf("Pushback(%q) = %v, %v, %v; want %v, %v, %v",
					tt.values, wait, pushedBack, ok, tt.wantWait, tt.wantPushedBack, tt.wantOK)
			}
		})
	}
}
