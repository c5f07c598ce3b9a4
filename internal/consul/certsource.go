package consul

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/rampart-go/rampart/internal/rpc"
)

var (
	_ x509svid.Source   = (*CertSource)(nil)
	_ x509bundle.Source = (*CertSource)(nil)
)

// WithStartTimeout bounds how long NewCertSource waits for the first leaf
// certificate and CA roots (default 30 s: a fresh dev agent has its CA
// within a few seconds). An agent that does not answer within it, or
// refuses (an ACL token without the permission), fails the start with the
// reason, rather than leaving a server that cannot complete a handshake.
func WithStartTimeout(d time.Duration) Option {
	return func(o *options) { o.startTimeout = d }
}

// CertSource is a service's identity from Consul's CA: its leaf certificate
// (an X.509 SVID whose URI SAN is
// spiffe://<cluster-id>.consul/ns/default/dc/<dc>/svc/<service>) and the CA
// roots as the trust bundle of that trust domain. It implements go-spiffe's
// x509svid.Source and x509bundle.Source, so internal/mtls builds TLS
// configurations that read the current pair on every handshake.
//
// Two goroutines follow the agent's leaf and roots endpoints with blocking
// queries: a renewal or a CA rotation reaches the next handshake within
// milliseconds of the agent having it, with no restart. Consul's own
// rotation is built for this: a new root is announced (roots first) and
// cross-signed by the old one, and the agents re-issue leaves a random
// moment up to 30 s later, so peers already trust a new leaf when it
// appears. While the agent is unreachable or refuses, the current pair is
// kept (a leaf stays valid until it expires, 72 h by default) and the
// queries are retried with backoff; failures are logged as outage decides
// (a refusal, 403, as an error naming the permission the token lacks, as
// is a TLS handshake with the agent failing on a certificate), and the
// end of an outage once.
type CertSource struct {
	client  *api.Client
	service string
	opts    options
	log     *log.Helper

	svid   atomic.Pointer[x509svid.SVID]
	bundle atomic.Pointer[x509bundle.Bundle]

	leafRotations atomic.Uint64
	rootRotations atomic.Uint64

	leaf, roots *follower
	ready       chan struct{} // closed once both have answered

	cancel context.CancelFunc
	wg     sync.WaitGroup
	close  sync.Once
}

// Rotations counts the changes a CertSource applied after its first leaf
// and roots: a renewed or re-issued leaf, a changed set of roots.
type Rotations struct {
	Leaf, Roots uint64
}

// NewCertSource starts following the leaf certificate of service and the CA
// roots on the agent client talks to, and returns once it has both. It
// fails if they do not arrive within WithStartTimeout or before ctx ends,
// with the last error each query met, and then has nothing left running.
// ctx bounds only the start; the source runs until Close.
//
// The ACL token needs service:write on service (Consul issues a leaf only
// to a token that may register the service). Consul 1.22's agent checks
// that only when it has a leaf signed: a leaf it already holds, key
// included, it serves to any token, the anonymous one too (seen in
// TestLeastPrivilegeToken). The agent's HTTP API is the host's trust
// boundary: bind it to loopback or a socket only this host's services
// reach.
func NewCertSource(ctx context.Context, client *api.Client, service string, opts ...Option) (*CertSource, error) {
	s, err := StartCertSource(client, service, opts...)
	if err != nil {
		return nil, err
	}
	startCtx, stop := context.WithTimeout(ctx, s.opts.startTimeout)
	defer stop()
	err = s.wait(startCtx, func() string {
		if ctx.Err() != nil {
			return ctx.Err().Error()
		}
		return "not within " + s.opts.startTimeout.String()
	})
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// StartCertSource starts following as NewCertSource does but returns at
// once, before the agent answered: a server that must come up while its
// agent is away (and stop cleanly meanwhile) waits on Ready or Wait
// instead, and GetX509SVID fails until then. It fails only without a
// service name. WithStartTimeout does not apply.
func StartCertSource(client *api.Client, service string, opts ...Option) (*CertSource, error) {
	if service == "" {
		return nil, errors.New("consul: certificates: no service name")
	}
	o := newOptions(opts)
	runCtx, cancel := context.WithCancel(context.Background())
	s := &CertSource{
		client: client, service: service, opts: o, log: log.NewHelper(o.logger), cancel: cancel,
		ready: make(chan struct{}),
	}
	s.leaf = &follower{
		what: "leaf certificate", hint: needWrite(service),
		ready: make(chan struct{}), fetch: s.fetchLeaf,
	}
	s.roots = &follower{
		what: "CA roots", hint: "the ACL token cannot read the CA roots",
		ready: make(chan struct{}), fetch: s.fetchRoots,
	}
	for _, f := range []*follower{s.leaf, s.roots} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.follow(runCtx, f)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for _, f := range []*follower{s.leaf, s.roots} {
			select {
			case <-f.ready:
			case <-runCtx.Done():
				return
			}
		}
		svid := s.svid.Load()
		s.log.Infof("consul: certificates of %s: leaf %s valid until %s, %d CA root(s) of %s",
			service, svid.ID, svid.Certificates[0].NotAfter.Format(time.RFC3339),
			len(s.bundle.Load().X509Authorities()), s.bundle.Load().TrustDomain())
		close(s.ready)
	}()
	return s, nil
}

// Ready is closed once the source has its first leaf and roots; from then
// on GetX509SVID and GetX509BundleForTrustDomain always answer.
func (s *CertSource) Ready() <-chan struct{} { return s.ready }

// Wait returns nil once the source is ready, or, if ctx ends first, an
// error saying what is missing and the last error its query met (the
// agent's refusal, naming the permission, or why it could not be reached).
// The source keeps trying either way, until Close.
func (s *CertSource) Wait(ctx context.Context) error {
	return s.wait(ctx, func() string { return ctx.Err().Error() })
}

// wait is Wait whose error says why in why's words.
func (s *CertSource) wait(ctx context.Context, why func() string) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
	}
	for _, f := range []*follower{s.leaf, s.roots} {
		select {
		case <-f.ready:
			continue
		default:
		}
		if err := f.lastErr(); err != nil {
			return fmt.Errorf("consul: certificates of %s: no %s: %s; last error: %w", s.service, f.what, why(), err)
		}
		return fmt.Errorf("consul: certificates of %s: no %s: %s", s.service, f.what, why())
	}
	// Both arrived as ctx ended: the source answers.
	return nil
}

// LastError is the last error a query of the source met while it has no
// leaf or roots, nil once it has both or before any query failed.
func (s *CertSource) LastError() error {
	select {
	case <-s.ready:
		return nil
	default:
	}
	for _, f := range []*follower{s.leaf, s.roots} {
		if err := f.lastErr(); err != nil {
			return err
		}
	}
	return nil
}

// GetX509SVID returns the current leaf certificate (with the intermediates
// the agent sent) and its key. Never nil once NewCertSource returned.
func (s *CertSource) GetX509SVID() (*x509svid.SVID, error) {
	if svid := s.svid.Load(); svid != nil {
		return svid, nil
	}
	return nil, fmt.Errorf("consul: certificates of %s: no leaf certificate yet", s.service)
}

// GetX509BundleForTrustDomain returns the CA roots if td is the cluster's
// trust domain; no other domain is trusted.
func (s *CertSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b := s.bundle.Load()
	if b == nil {
		return nil, fmt.Errorf("consul: certificates of %s: no CA roots yet", s.service)
	}
	if b.TrustDomain() != td {
		return nil, fmt.Errorf("consul: no CA roots for trust domain %s (Consul's is %s)", td, b.TrustDomain())
	}
	return b, nil
}

// ID is the SPIFFE ID of the current leaf: the service's identity.
func (s *CertSource) ID() spiffeid.ID {
	if svid := s.svid.Load(); svid != nil {
		return svid.ID
	}
	return spiffeid.ID{}
}

// Expiry is when the current leaf certificate expires. The agent renews a
// leaf well before that; an Expiry in the past means it could not (the
// agent or the servers have been unreachable that long).
func (s *CertSource) Expiry() time.Time {
	if svid := s.svid.Load(); svid != nil {
		return svid.Certificates[0].NotAfter
	}
	return time.Time{}
}

// Rotations returns how many times the leaf and the roots have changed
// since the first ones.
func (s *CertSource) Rotations() Rotations {
	return Rotations{Leaf: s.leafRotations.Load(), Roots: s.rootRotations.Load()}
}

// Close stops following the agent and waits for both goroutines to end.
// The current leaf and roots stay readable: a server draining its last
// calls may still complete handshakes. Idempotent.
func (s *CertSource) Close() error {
	s.close.Do(func() {
		s.cancel()
		s.wg.Wait()
	})
	return nil
}

// follower is one blocking query loop: the leaf's or the roots'.
type follower struct {
	what  string // for logs: "leaf certificate"
	hint  string // what a 403 means here
	fetch func(ctx context.Context, index uint64) (uint64, error)
	ready chan struct{} // closed after the first successful fetch

	mu   sync.Mutex
	last error
}

func (f *follower) lastErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *follower) setErr(err error) {
	f.mu.Lock()
	f.last = err
	f.mu.Unlock()
}

// follow runs f's blocking queries until ctx ends. fetch returns the index
// to wait on next. As in the discovery watcher, an error or an index that
// goes backwards (a new agent) starts again from index 0.
func (s *CertSource) follow(ctx context.Context, f *follower) {
	var (
		index    uint64
		bo       = newBackoff(s.opts.backoffInitial, s.opts.backoffMax)
		failures = outage{hint: f.hint}
		got      bool
	)
	for {
		next, err := f.fetch(ctx, index)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			refused, log, ferr := failures.fail(err)
			f.setErr(ferr)
			if log {
				logf := s.log.Warnf
				if refused {
					logf = s.log.Errorf
				}
				if got {
					logf("consul: certificates of %s: %s: %v; keeping the current leaf (valid until %s), retrying",
						s.service, f.what, ferr, s.Expiry().Format(time.RFC3339))
				} else {
					logf("consul: certificates of %s: %s: %v; retrying", s.service, f.what, ferr)
				}
			}
			index = 0
			if rpc.Sleep(ctx, bo.next()) != nil {
				return
			}
			continue
		}
		bo.reset()
		if d := failures.end(); d > 0 {
			s.log.Infof("consul: certificates of %s: %s: Consul answers again after %s",
				s.service, f.what, d.Round(time.Millisecond))
		}
		if !got {
			got = true
			close(f.ready)
		}
		if next < index {
			next = 0
		}
		// Index 0 would make the next query return at once, in a loop.
		index = max(next, 1)
	}
}

func (s *CertSource) query(ctx context.Context, index uint64) *api.QueryOptions {
	return (&api.QueryOptions{WaitIndex: index, WaitTime: s.opts.waitTime}).WithContext(ctx)
}

// fetchLeaf waits for a leaf newer than index and installs it if it is a
// different certificate.
func (s *CertSource) fetchLeaf(ctx context.Context, index uint64) (uint64, error) {
	leaf, meta, err := s.client.Agent().ConnectCALeaf(s.service, s.query(ctx, index))
	if err != nil {
		return 0, err
	}
	if meta.LastIndex == index {
		return index, nil // the wait timed out: nothing new
	}
	svid, err := parseLeaf(leaf)
	if err != nil {
		return 0, err
	}
	// Serials are a per-CA counter: a new CA (a restarted dev agent) can
	// issue the same serial again, so compare the certificates.
	cur := s.svid.Load()
	if cur != nil && cur.Certificates[0].Equal(svid.Certificates[0]) {
		return meta.LastIndex, nil
	}
	if got, ok := rpc.ServiceOfURI(svid.ID.URL()); !ok || got != s.service {
		return 0, fmt.Errorf("the agent issued %s, not a leaf of %s", svid.ID, s.service)
	}
	s.svid.Store(svid)
	if cur != nil {
		s.leafRotations.Add(1)
		s.log.Infof("consul: certificates of %s: new leaf (serial %s) valid until %s",
			s.service, leaf.SerialNumber, svid.Certificates[0].NotAfter.Format(time.RFC3339))
	}
	return meta.LastIndex, nil
}

// fetchRoots waits for roots newer than index and installs them if the set
// of roots changed.
func (s *CertSource) fetchRoots(ctx context.Context, index uint64) (uint64, error) {
	list, meta, err := s.client.Agent().ConnectCARoots(s.query(ctx, index))
	if err != nil {
		return 0, err
	}
	if meta.LastIndex == index {
		return index, nil
	}
	b, err := parseRoots(list)
	if err != nil {
		return 0, err
	}
	cur := s.bundle.Load()
	if cur != nil && cur.Equal(b) {
		return meta.LastIndex, nil
	}
	s.bundle.Store(b)
	if cur != nil {
		s.rootRotations.Add(1)
		s.log.Infof("consul: certificates of %s: CA roots changed: %d root(s), active %s",
			s.service, len(b.X509Authorities()), list.ActiveRootID)
	}
	return meta.LastIndex, nil
}

// parseLeaf turns the agent's leaf into an SVID. The agent sends the leaf
// followed by any intermediates (after a CA rotation, the new root
// cross-signed by the old), and the key as SEC 1 ("EC PRIVATE KEY"), PKCS
// #1 or PKCS #8 PEM; go-spiffe wants PKCS #8.
func parseLeaf(leaf *api.LeafCert) (*x509svid.SVID, error) {
	chain := certsDER(leaf.CertPEM)
	if len(chain) == 0 {
		return nil, fmt.Errorf("leaf %s: no certificate in CertPEM", leaf.SerialNumber)
	}
	block, _ := pem.Decode([]byte(leaf.PrivateKeyPEM))
	if block == nil {
		return nil, fmt.Errorf("leaf %s: no key in PrivateKeyPEM", leaf.SerialNumber)
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("leaf %s: key: %w", leaf.SerialNumber, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("leaf %s: key: %w", leaf.SerialNumber, err)
	}
	svid, err := x509svid.ParseRaw(chain, pkcs8)
	if err != nil {
		return nil, fmt.Errorf("leaf %s: %w", leaf.SerialNumber, err)
	}
	return svid, nil
}

// parseRoots is the trust bundle of every root the cluster lists: the
// active one and those still trusted after a rotation, whose leaves may
// still be in use.
func parseRoots(list *api.CARootList) (*x509bundle.Bundle, error) {
	td, err := spiffeid.TrustDomainFromString(list.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("CA roots: trust domain %q: %w", list.TrustDomain, err)
	}
	var roots []*x509.Certificate
	for _, r := range list.Roots {
		certs, err := x509.ParseCertificates(certsDER(r.RootCertPEM))
		if err != nil {
			return nil, fmt.Errorf("CA root %s: %w", r.ID, err)
		}
		roots = append(roots, certs...)
	}
	if len(roots) == 0 {
		return nil, errors.New("CA roots: none listed (is Connect enabled on the servers?)")
	}
	// The same order for the same set, so an unchanged set compares equal.
	slices.SortFunc(roots, func(a, b *x509.Certificate) int { return bytes.Compare(a.Raw, b.Raw) })
	return x509bundle.FromX509Authorities(td, roots), nil
}

// certsDER is the DER of the CERTIFICATE blocks of a PEM text, one after
// the other, as x509.ParseCertificates and x509svid.ParseRaw take it.
func certsDER(pemText string) []byte {
	var der []byte
	rest := []byte(pemText)
	for {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return der
		}
		if block.Type == "CERTIFICATE" {
			der = append(der, block.Bytes...)
		}
	}
}
