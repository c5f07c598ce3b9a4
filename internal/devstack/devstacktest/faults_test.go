package devstacktest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/middleware/faults"
)

const getUser = "/user.v1.UserService/GetUser"

// instance serves an injector's /debug/faults the way a service does and
// returns a ServiceProc pointing at it.
func instance(t *testing.T) *devstack.ServiceProc {
	t.Helper()
	inj, err := faults.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/debug/faults", inj.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &devstack.ServiceProc{HTTPAddr: strings.TrimPrefix(srv.URL, "http://")}
}

// The client speaks the injector's protocol: what SetFaults puts, Faults
// reads back, and ClearFaults removes it.
func TestFaultsRoundTrip(t *testing.T) {
	ctx := devstacktest.Context(t, 10*time.Second)
	p := instance(t)
	want := faults.Fault{Abort: &faults.Abort{Percent: 50, Code: "UNAVAILABLE"}}
	if err := devstacktest.SetFaults(ctx, p, map[string]faults.Fault{getUser: want}); err != nil {
		t.Fatal(err)
	}
	st, err := devstacktest.Faults(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Faults[getUser]; got.Abort == nil || *got.Abort != *want.Abort {
		t.Fatalf("faults after SetFaults = %+v, want %s: %+v", st.Faults, getUser, want)
	}
	if err = devstacktest.ClearFaults(ctx, p); err != nil {
		t.Fatal(err)
	}
	if st, err = devstacktest.Faults(ctx, p); err != nil || len(st.Faults) != 0 {
		t.Fatalf("faults after ClearFaults = %+v, %v; want none", st, err)
	}
}

// A refused request is an error that carries the instance's reason, so a
// test that sets a bad fault learns why.
func TestFaultsErrors(t *testing.T) {
	ctx := devstacktest.Context(t, 10*time.Second)
	tests := []struct {
		name string
		p    *devstack.ServiceProc
		call func(context.Context, *devstack.ServiceProc) error
		want string
	}{
		{
			name: "rejected fault",
			p:    instance(t),
			call: func(ctx context.Context, p *devstack.ServiceProc) error {
				return devstacktest.SetFaults(ctx, p, map[string]faults.Fault{getUser: {Abort: &faults.Abort{Percent: 120, Code: "INTERNAL"}}})
			},
			want: "400 Bad Request",
		},
		{
			name: "nothing listening",
			p:    &devstack.ServiceProc{HTTPAddr: "127.0.0.1:1"},
			call: func(ctx context.Context, p *devstack.ServiceProc) error {
				_, err := devstacktest.Faults(ctx, p)
				return err
			},
			want: "GET /debug/faults on 127.0.0.1:1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(ctx, tt.p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}
