package consul

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/registry"
	"github.com/hashicorp/consul/api"
)

// entryFor is what Consul hands back for a registration.
func entryFor(reg *api.AgentServiceRegistration) *api.ServiceEntry {
	return &api.ServiceEntry{
		Node: &api.Node{Address: "10.0.0.9"},
		Service: &api.AgentService{
			ID: reg.ID, Service: reg.Name, Tags: reg.Tags, Meta: reg.Meta,
			Address: reg.Address, Port: reg.Port,
		},
	}
}

func TestRegistrationRoundTrip(t *testing.T) {
	r := New(nil, WithTags("blue"), WithHealthCheck(2*time.Second, 500*time.Millisecond, 0))
	tests := []*registry.ServiceInstance{
		{
			ID: "user-1", Name: "user", Version: "v1",
			Metadata:  map[string]string{"zone": "a"},
			Endpoints: []string{"http://127.0.0.1:8000?isSecure=false", "grpc://127.0.0.1:9000?isSecure=false"},
		},
		{ID: "user-2", Name: "user", Endpoints: []string{"grpc://[::1]:9001"}},
	}
	for _, ins := range tests {
		reg, err := r.registration(ins)
		if err != nil {
			t.Fatalf("%s: %v", ins.ID, err)
		}
		got := instance(entryFor(reg))
		if got.ID != ins.ID || got.Name != ins.Name || got.Version != ins.Version ||
			!slices.Equal(got.Endpoints, ins.Endpoints) || !maps.Equal(got.Metadata, ins.Metadata) {
			t.Errorf("round trip of %+v gave %+v", ins, got)
		}
	}

	reg, _ := r.registration(tests[0])
	if reg.Address != "127.0.0.1" || reg.Port != 9000 {
		t.Errorf("address = %s:%d, want the grpc endpoint 127.0.0.1:9000", reg.Address, reg.Port)
	}
	if !slices.Equal(reg.Tags, []string{"version=v1", "blue"}) {
		t.Errorf("tags = %v", reg.Tags)
	}
	c := reg.Check
	if c.GRPC != "127.0.0.1:9000" || c.GRPCUseTLS || c.Interval != "2s" || c.Timeout != "500ms" ||
		c.Status != api.HealthPassing || c.DeregisterCriticalServiceAfter != "" || len(reg.Checks) != 0 {
		t.Errorf("check = %+v", c)
	}
}

func TestInstanceWithoutEndpointMeta(t *testing.T) {
	// A service registered by other tooling: no endpoint keys, no address.
	got := instance(&api.ServiceEntry{
		Node:    &api.Node{Address: "10.0.0.9"},
		Service: &api.AgentService{ID: "x", Service: "other", Port: 7000},
	})
	if want := []string{"grpc://10.0.0.9:7000?isSecure=false"}; !slices.Equal(got.Endpoints, want) {
		t.Errorf("endpoints = %v, want %v", got.Endpoints, want)
	}
}

func TestSameInstances(t *testing.T) {
	a := []*registry.ServiceInstance{{ID: "1", Name: "s", Version: "v1", Endpoints: []string{"grpc://h:1"}, Metadata: map[string]string{"k": "v"}}}
	change := []func(*registry.ServiceInstance){
		func(s *registry.ServiceInstance) { s.ID = "2" },
		func(s *registry.ServiceInstance) { s.Version = "v2" },
		func(s *registry.ServiceInstance) { s.Endpoints = []string{"grpc://h:2"} },
		func(s *registry.ServiceInstance) { s.Metadata = map[string]string{"k": "w"} },
	}
	if !sameInstances(a, cloneInstances(a)) {
		t.Fatal("a set differs from its clone")
	}
	if sameInstances(a, nil) {
		t.Error("a set equals the empty set")
	}
	for i, f := range change {
		b := cloneInstances(a)
		f(b[0])
		if sameInstances(a, b) {
			t.Errorf("change %d not detected", i)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := newBackoff(100*time.Millisecond, time.Second)
	ms := time.Millisecond
	steps := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1000 * ms, 1000 * ms}
	for i, step := range steps {
		if d := b.next(); d < step/2 || d > step {
			t.Errorf("retry %d: %s, want in [%s, %s]", i, d, step/2, step)
		}
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Errorf("after reset: %s", d)
	}
}
