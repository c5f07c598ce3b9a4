package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"
	"gopkg.in/yaml.v3"
)

// ClientIdentity is the service identity of the launcher's own calls in
// mtls mode (the demo flow): a certificate of it is allowed by intention to
// call every service of the stack, and is no service's.
const ClientIdentity = "devstack"

// Callees are the services the config file at path calls: the <name> of
// each clients.<client>.target that reads discovery:///<name>, sorted and
// once each. They decide a service's ACL policy (service:read on each) and
// its intentions (allowed to call each) in mtls mode.
func Callees(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("callees: %w", err)
	}
	var doc struct {
		Clients map[string]struct {
			Target string `yaml:"target"`
		} `yaml:"clients"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("callees of %s: %w", path, err)
	}
	var out []string
	for name, c := range doc.Clients {
		u, err := url.Parse(c.Target)
		if err != nil || u.Scheme != "discovery" || strings.Trim(u.Path, "/") == "" {
			return nil, fmt.Errorf("callees of %s: clients.%s.target %q is not discovery:///<service>", path, name, c.Target)
		}
		if svc := strings.Trim(u.Path, "/"); !slices.Contains(out, svc) {
			out = append(out, svc)
		}
	}
	slices.Sort(out)
	return out, nil
}

// AllowIntention writes the intention caller -> callee, allow, with the
// client's token (the management token: intentions are written with
// intentions:write on the destination).
func AllowIntention(ctx context.Context, client *api.Client, caller, callee string) error {
	_, err := client.Connect().IntentionUpsert(&api.Intention{
		SourceName:      caller,
		DestinationName: callee,
		Action:          api.IntentionActionAllow,
		Description:     "devstack: " + caller + " calls " + callee,
	}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("intention %s -> %s: %w", caller, callee, err)
	}
	return nil
}

// RotateCA makes the cluster's built-in CA generate a new root, with the
// client's token (operator:write, as the management token has), by
// switching its key type (ec <-> rsa): Consul refuses a leaf TTL under 1 h,
// so a new key is the quick way to force every leaf to be re-issued. The
// new root is cross-signed by the old, which stays trusted; the agents
// announce the new roots at once and re-issue each leaf a random moment up
// to 30 s later. The key and root an agent WithConsulACL was given are
// left out, so Consul makes new ones; a Restart of that agent brings back
// the CA it was started with.
func RotateCA(ctx context.Context, client *api.Client) error {
	cfg, _, err := client.Connect().CAGetConfig((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("rotate CA: %w", err)
	}
	delete(cfg.Config, "PrivateKey")
	delete(cfg.Config, "RootCert")
	if cfg.Config["PrivateKeyType"] == "rsa" {
		cfg.Config["PrivateKeyType"], cfg.Config["PrivateKeyBits"] = "ec", 256
	} else {
		cfg.Config["PrivateKeyType"], cfg.Config["PrivateKeyBits"] = "rsa", 2048
	}
	if _, err := client.Connect().CASetConfig(cfg, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("rotate CA: %w", err)
	}
	return nil
}

// secureStack sets up, on an agent started WithConsulACL, what each
// service of cfg needs to run in mtls mode: a token with the least policy
// (ServicePolicyRules, its callees from its config) in its instances'
// environment, and the intentions that let it call its callees and let
// ClientIdentity call it. It returns each service's extra environment.
func (s *Stack) secureStack(ctx context.Context) (map[string][]string, error) {
	env := make(map[string][]string, len(s.cfg.Services))
	for _, sc := range s.cfg.Services {
		e, err := s.secureService(ctx, sc.Name)
		if err != nil {
			return nil, err
		}
		env[sc.Name] = e
	}
	return env, nil
}

// secureService makes name's token and intentions (secureStack) and
// returns the environment that gives an instance the token.
func (s *Stack) secureService(ctx context.Context, name string) ([]string, error) {
	token, err := provisionService(ctx, s.Consul, name, s.configFor(name))
	if err != nil {
		return nil, err
	}
	return []string{api.HTTPTokenEnvName + "=" + token}, nil
}

// ServiceEnv is the environment an instance of name needs on the stack's
// agent beyond its config, for an instance a test starts outside the stack
// (StartService): in a stack with ACLs, a token of name's own, made with
// its intentions (as for the stack's services) the first time it is asked
// for; nothing otherwise.
func (s *Stack) ServiceEnv(ctx context.Context, name string) ([]string, error) {
	if !s.mtls || s.Consul == nil {
		return nil, nil
	}
	s.mu.Lock()
	env, ok := s.env[name]
	s.mu.Unlock()
	if ok {
		return env, nil
	}
	env, err := s.secureService(ctx, name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.env[name] = env
	s.mu.Unlock()
	return env, nil
}

// MTLS reports whether some instance of the stack runs in mtls mode, so
// that a client must present a certificate (of ClientIdentity, which may
// call every service) and Consul reads need Client's token.
func (s *Stack) MTLS() bool { return s.mtls }

// securityEnv is the variable that sets security.mode over the file.
const securityEnv = "RAMPART_SECURITY_MODE"

// anyMTLS resolves each service's security.mode as its instances will
// (StackConfig.Security, else cfg.Env, else the config file) and reports
// whether any is mtls. A forced mode is added to cfg.Env.
func (s *Stack) anyMTLS() (bool, error) {
	switch s.cfg.Security {
	case "":
	case SecurityPlaintext, SecurityMTLS:
		s.cfg.Env = append(slices.Clip(s.cfg.Env), securityEnv+"="+s.cfg.Security)
		return s.cfg.Security == SecurityMTLS, nil
	default:
		return false, fmt.Errorf("stack: security %q is not %s or %s", s.cfg.Security, SecurityPlaintext, SecurityMTLS)
	}
	for i := len(s.cfg.Env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(s.cfg.Env[i], securityEnv+"="); ok {
			return v == SecurityMTLS, nil
		}
	}
	for _, sc := range s.cfg.Services {
		mode, err := SecurityMode(s.configFor(sc.Name))
		if err != nil {
			return false, err
		}
		if mode == SecurityMTLS {
			return true, nil
		}
	}
	return false, nil
}

// SecurityMode is security.mode in the config file at path, plaintext when
// the file does not set it (internal/conf's default).
func SecurityMode(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("security mode: %w", err)
	}
	var doc struct {
		Security struct {
			Mode string `yaml:"mode"`
		} `yaml:"security"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return "", fmt.Errorf("security mode of %s: %w", path, err)
	}
	if doc.Security.Mode == "" {
		return SecurityPlaintext, nil
	}
	return doc.Security.Mode, nil
}

// provisionService creates, on agent (started WithConsulACL), a token of
// service with the least policy (ServicePolicyRules, its callees from its
// config file) and the intentions that let it call its callees and
// ClientIdentity call it (Allow, so a Restart keeps them). It returns the
// token's secret.
func provisionService(ctx context.Context, agent *ConsulAgent, service, config string) (string, error) {
	callees, err := Callees(config)
	if err != nil {
		return "", err
	}
	token, err := agent.ServiceToken(ctx, service, callees...)
	if err != nil {
		return "", err
	}
	for _, callee := range callees {
		if err := agent.Allow(ctx, service, callee); err != nil {
			return "", err
		}
	}
	if err := agent.Allow(ctx, ClientIdentity, service); err != nil {
		return "", err
	}
	return token, nil
}

// The files a launcher writes in its work dir to tell tools (make cert,
// the consul CLI) how to reach its agent: the address, and with ACLs on
// the management token, alone in a file readable by its owner only, in
// the form CONSUL_HTTP_TOKEN_FILE reads.
const (
	AddrFile  = "consul-addr"
	TokenFile = "consul-token"
)

// WriteAccess writes the stack's agent address and management token (when
// it has one) to dir/AddrFile and dir/TokenFile.
func (s *Stack) WriteAccess(dir string) error {
	return writeAccess(dir, s.ConsulAddr, s.ManagementToken())
}

// WriteAccess writes, like Stack.WriteAccess, the Nomad stack's Consul
// address and management token to dir/AddrFile and dir/TokenFile.
func (s *NomadStack) WriteAccess(dir string) error {
	return writeAccess(dir, s.Consul.Addr(), s.ManagementToken())
}

func writeAccess(dir, addr, token string) error {
	if err := os.WriteFile(filepath.Join(dir, AddrFile), []byte(addr+"\n"), 0o644); err != nil {
		return err
	}
	if token != "" {
		return os.WriteFile(filepath.Join(dir, TokenFile), []byte(token+"\n"), 0o600)
	}
	return nil
}

// RemoveAccess removes what WriteAccess wrote.
func RemoveAccess(dir string) {
	_ = os.Remove(filepath.Join(dir, AddrFile))
	_ = os.Remove(filepath.Join(dir, TokenFile))
}

// ReadAccess reads what a running stack wrote with WriteAccess in dir: the
// agent's address and its management token ("" without ACLs).
func ReadAccess(dir string) (addr, token string, err error) {
	a, err := os.ReadFile(filepath.Join(dir, AddrFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("no %s in %s: is `make run` running (in mtls)?", AddrFile, dir)
	}
	if err != nil {
		return "", "", err
	}
	t, err := os.ReadFile(filepath.Join(dir, TokenFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", "", err
	}
	return strings.TrimSpace(string(a)), strings.TrimSpace(string(t)), nil
}

// ManagementToken is the token of the stack's agent started with ACLs
// (StackConfig.MTLS), "" otherwise.
func (s *Stack) ManagementToken() string {
	if s.Consul == nil {
		return ""
	}
	return s.Consul.ManagementToken()
}

// CertFiles are the PEM files WriteCert wrote for one identity.
type CertFiles struct {
	Dir, Cert, Key, CA string
}

// WriteCert asks the agent behind client (whose token needs service:write
// on identity, as the management token has) for a leaf certificate of the
// service identity and for the CA roots, and writes them under
// dir/<identity>/: cert.pem (the leaf, then any intermediates), key.pem
// (its key, owner-readable only) and ca.pem (every root). The leaf is valid
// for the CA's leaf TTL (72 h on a dev agent); write it again after that
// or after the agent restarted (a dev agent's new CA trusts none of the old
// leaves).
func WriteCert(ctx context.Context, client *api.Client, identity, dir string) (CertFiles, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	leaf, _, err := client.Agent().ConnectCALeaf(identity, q)
	if err != nil {
		return CertFiles{}, fmt.Errorf("certificate of %s: %w", identity, err)
	}
	roots, _, err := client.Agent().ConnectCARoots(q)
	if err != nil {
		return CertFiles{}, fmt.Errorf("CA roots: %w", err)
	}
	var ca strings.Builder
	for _, r := range roots.Roots {
		ca.WriteString(strings.TrimSpace(r.RootCertPEM) + "\n")
	}
	f := CertFiles{Dir: filepath.Join(dir, identity)}
	f.Cert, f.Key, f.CA = filepath.Join(f.Dir, "cert.pem"), filepath.Join(f.Dir, "key.pem"), filepath.Join(f.Dir, "ca.pem")
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return CertFiles{}, err
	}
	for _, w := range []struct {
		path, text string
		mode       os.FileMode
	}{
		{f.Cert, leaf.CertPEM, 0o644},
		{f.Key, leaf.PrivateKeyPEM, 0o600},
		{f.CA, ca.String(), 0o644},
	} {
		if err := os.WriteFile(w.path, []byte(strings.TrimSpace(w.text)+"\n"), w.mode); err != nil {
			return CertFiles{}, err
		}
	}
	return f, nil
}
