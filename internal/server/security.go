package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/consul"
	"github.com/rampart-go/rampart/internal/middleware"
	"github.com/rampart-go/rampart/internal/middleware/authz"
	"github.com/rampart-go/rampart/internal/mtls"
)

// The certificate metrics an instance exports in mtls mode (Instrument).
const (
	// MetricLeafExpiry is when the leaf certificate the instance presents
	// expires, in Unix seconds, as cert-manager's
	// certmanager_certificate_expiration_timestamp_seconds: an alert
	// compares it with time(). Consul renews a leaf at about half its TTL,
	// so one that comes within a day of its end has stopped rotating.
	MetricLeafExpiry = "rampart_mtls_leaf_expiry_timestamp_seconds"
	// MetricRotations counts the leaves (kind="leaf") and sets of CA roots
	// (kind="roots") the instance took on after its first ones.
	MetricRotations = "rampart_mtls_rotations_total"
)

// waitLogEvery is how often an instance still waiting for its first
// certificate says so, with the last error the agent gave.
const waitLogEvery = 10 * time.Second

// Identity is an instance's identity in mtls mode (security.mode): its
// leaf certificate and the CA roots from its Consul agent, followed in the
// background (rotation needs no restart), and the intentions that decide
// who may call it. A nil *Identity is plaintext mode, and every method
// reads it so.
//
// Policy: an instance without its first certificate cannot complete a
// handshake, so it must not take calls. NewIdentity does not wait for the
// agent (a process must start, and stop cleanly, while its agent is away);
// App waits for the certificate before it serves gRPC, registers in Consul
// or reports ready, and meanwhile serves only its side port, /readyz
// answering 503.
type Identity struct {
	service string
	src     certSource
	// newAuthorizer builds the intentions' authorizer once the first
	// certificate names the instance.
	newAuthorizer func(self spiffeid.ID) (authz.Authorizer, error)
	authz         atomic.Pointer[authorizer] // set by wait
}

// certSource is what an Identity reads of its certificates: consul's
// CertSource, or a fixed source (NewFixedIdentity).
type certSource interface {
	mtls.Source
	Ready() <-chan struct{}
	LastError() error
	ID() spiffeid.ID
	Expiry() time.Time
	Rotations() consul.Rotations
}

// authorizer boxes an authz.Authorizer for the atomic pointer.
type authorizer struct{ authz.Authorizer }

// NewIdentity starts following the certificates of the instance's service
// in mtls mode, with its certificate metrics (Instrument) on mp, and
// returns nil in plaintext mode, which exports none. The cleanup stops
// following.
func NewIdentity(sec conf.Security, client *api.Client, inst Instance, mp metric.MeterProvider, logger log.Logger) (*Identity, func(), error) {
	if sec.Mode != conf.SecurityMTLS {
		return nil, func() {}, nil
	}
	src, err := consul.StartCertSource(client, inst.Name, consul.WithLogger(logger))
	if err != nil {
		return nil, nil, fmt.Errorf("security: %w", err)
	}
	id := &Identity{
		service: inst.Name,
		src:     src,
		newAuthorizer: func(self spiffeid.ID) (authz.Authorizer, error) {
			return consul.NewAuthorizer(client, self, consul.WithAuthorization(sec.AuthzCacheTTL, time.Second), consul.WithLogger(logger))
		},
	}
	uninstrument, err := id.Instrument(mp)
	if err != nil {
		_ = src.Close()
		return nil, nil, fmt.Errorf("security: %w", err)
	}
	return id, func() {
		uninstrument()
		_ = src.Close()
	}, nil
}

// Instrument exports the identity's certificate metrics through mp, read
// at each collection: MetricLeafExpiry of the current leaf (no point before
// the first one) and MetricRotations by kind, each labelled with the
// service. The returned func stops exporting them.
func (id *Identity) Instrument(mp metric.MeterProvider) (func(), error) {
	m := mp.Meter("github.com/rampart-go/rampart/internal/server")
	expiry, err := m.Int64ObservableGauge(MetricLeafExpiry, metric.WithUnit("s"),
		metric.WithDescription("When the instance's mTLS leaf certificate expires, in Unix seconds."))
	if err != nil {
		return nil, fmt.Errorf("metric %s: %w", MetricLeafExpiry, err)
	}
	rotations, err := m.Int64ObservableCounter(MetricRotations, metric.WithUnit("{rotation}"),
		metric.WithDescription("Leaf certificates (kind=leaf) and CA root sets (kind=roots) taken on after the first."))
	if err != nil {
		return nil, fmt.Errorf("metric %s: %w", MetricRotations, err)
	}
	svc := attribute.String("service", id.service)
	// Built once: a collection allocates no attribute sets.
	of := metric.WithAttributes(svc)
	leaf := metric.WithAttributes(svc, attribute.String("kind", "leaf"))
	roots := metric.WithAttributes(svc, attribute.String("kind", "roots"))
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if t := id.src.Expiry(); !t.IsZero() {
			o.ObserveInt64(expiry, t.Unix(), of)
		}
		r := id.src.Rotations()
		o.ObserveInt64(rotations, int64(r.Leaf), leaf)
		o.ObserveInt64(rotations, int64(r.Roots), roots)
		return nil
	}, expiry, rotations)
	if err != nil {
		return nil, fmt.Errorf("certificate metrics: %w", err)
	}
	return func() { _ = reg.Unregister() }, nil
}

// NewFixedIdentity is an mtls-mode identity over a source that already
// holds its certificate (mtlstest's test CA) and a given authorizer, for
// tests and benchmarks that measure the secure path without a Consul agent.
func NewFixedIdentity(service string, src mtls.Source, self spiffeid.ID, a authz.Authorizer) *Identity {
	ready := make(chan struct{})
	close(ready)
	id := &Identity{service: service, src: fixedSource{Source: src, ready: ready, id: self}}
	id.authz.Store(&authorizer{a})
	return id
}

// fixedSource is a source that is ready from the start.
type fixedSource struct {
	mtls.Source
	ready chan struct{}
	id    spiffeid.ID
}

func (f fixedSource) Ready() <-chan struct{}      { return f.ready }
func (f fixedSource) LastError() error            { return nil }
func (f fixedSource) ID() spiffeid.ID             { return f.id }
func (f fixedSource) Rotations() consul.Rotations { return consul.Rotations{} }

// Expiry is when the SVID the source holds now expires.
func (f fixedSource) Expiry() time.Time {
	svid, err := f.GetX509SVID()
	if err != nil || svid == nil {
		return time.Time{}
	}
	return svid.Certificates[0].NotAfter
}

// Source is the certificate source, nil in plaintext mode.
func (id *Identity) Source() mtls.Source {
	if id == nil {
		return nil
	}
	return id.src
}

// NewTLSSource is the certificate source the Dialer presents, nil in
// plaintext mode.
func NewTLSSource(id *Identity) mtls.Source { return id.Source() }

// NewAuthorization is the server chain's authorization step: the
// intentions of the instance's service in mtls mode, none in plaintext.
func NewAuthorization(id *Identity) middleware.Authorization {
	if id == nil {
		return middleware.Authorization{}
	}
	return middleware.Authorization{Service: id.service, Authorizer: id}
}

// serverTLS is the gRPC port's TLS configuration, nil in plaintext mode.
func (id *Identity) serverTLS() *tls.Config {
	if id == nil {
		return nil
	}
	return mtls.ServerConfig(id.src)
}

// selfTLS is the configuration of a client of the instance's own gRPC
// port (its gateway), nil in plaintext mode.
func (id *Identity) selfTLS() *tls.Config {
	if id == nil {
		return nil
	}
	return mtls.ClientConfig(id.src, id.service)
}

// wait returns once the first certificate and roots are in, or with
// ctx's error when ctx ends first, and then builds the authorizer on the
// identity the certificate names. Plaintext mode has nothing to wait for.
func (id *Identity) wait(ctx context.Context, logger *log.Helper) error {
	if id == nil {
		return nil
	}
	if err := id.awaitCertificate(ctx, logger); err != nil {
		return err
	}
	if id.authz.Load() != nil {
		return nil
	}
	a, err := id.newAuthorizer(id.src.ID())
	if err != nil {
		return fmt.Errorf("security: %w", err)
	}
	id.authz.Store(&authorizer{a})
	return nil
}

// awaitCertificate waits for the source to be ready, saying what it waits
// for, then every waitLogEvery the agent's last error (a refusal names the
// permission the token lacks).
func (id *Identity) awaitCertificate(ctx context.Context, logger *log.Helper) error {
	select {
	case <-id.src.Ready():
		return nil
	default:
	}
	logger.Warnf("security: mtls: waiting for the certificate of %s from the Consul agent; not ready and not registered until it comes", id.service)
	start := time.Now()
	tick := time.NewTicker(waitLogEvery)
	defer tick.Stop()
	for {
		select {
		case <-id.src.Ready():
			logger.Infof("security: mtls: certificate of %s after %s", id.service, time.Since(start).Round(time.Millisecond))
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			logger.Warnf("security: mtls: still no certificate of %s after %s (last error: %v)",
				id.service, time.Since(start).Round(time.Second), id.src.LastError())
		}
	}
}

// errNoIdentityYet answers an authorization asked before the first
// certificate: App serves no call before then, so it means a bug, and the
// call fails closed.
var errNoIdentityYet = errors.New("security: no certificate yet, so no authorizer")

// Authorize asks Consul's intentions whether caller may call target
// (authz.Authorizer).
func (id *Identity) Authorize(ctx context.Context, caller, target string) (bool, string, error) {
	a := id.authz.Load()
	if a == nil {
		return false, "", errNoIdentityYet
	}
	return a.Authorize(ctx, caller, target)
}
