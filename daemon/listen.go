package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/veil-dp/veil/policy"
)

// certs is the TLS certificate the TCP listeners present. It is read again by ReloadTLS;
// each handshake takes the one loaded last, so that a renewed certificate is served without
// dropping a connection.
type certs struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func (c *certs) load() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load the TLS certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	if pair.Leaf == nil && len(pair.Certificate) > 0 {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("parse the TLS certificate %s: %w", c.certFile, err)
		}
	}
	c.cur.Store(&pair)
	return nil
}

func (c *certs) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
	}
}

// ReloadTLS reads the TLS certificate and key again (veil serve does on SIGHUP). New
// connections get the new certificate; open ones keep theirs. On failure the daemon keeps
// serving the certificate it had, and the error says why.
func (s *Server) ReloadTLS() error {
	if s.certs == nil {
		return errors.New("no TLS certificate to reload: the daemon was started without --tls-cert")
	}
	if err := s.certs.load(); err != nil {
		return err
	}
	leaf := s.certs.cur.Load().Leaf
	s.slog.Info("TLS certificate reloaded", "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
	return nil
}

// loopback reports whether addr (host:port) listens only on the loopback interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkListen refuses what would send tokens across a network in the clear: a TCP listener
// on an address other than loopback without TLS, unless the operator forces it; and half a
// TLS configuration. It returns the certificate to serve, if any.
func checkListen(c Config) (*certs, error) {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, fmt.Errorf("%w: give both --tls-cert and --tls-key, or neither", policy.ErrInvalid)
	}
	var cs *certs
	if c.TLSCert != "" {
		if c.Listen == "" && c.MetricsListen == "" {
			return nil, fmt.Errorf("%w: --tls-cert is for the TCP listeners: give --listen or --metrics-listen too", policy.ErrInvalid)
		}
		cs = &certs{certFile: c.TLSCert, keyFile: c.TLSKey}
		if err := cs.load(); err != nil {
			return nil, err
		}
	}
	for _, l := range []struct{ flag, addr string }{{"--listen", c.Listen}, {"--metrics-listen", c.MetricsListen}} {
		if l.addr == "" || cs != nil || c.InsecureListen || loopback(l.addr) {
			continue
		}
		return nil, fmt.Errorf("%w: %s %s is not a loopback address, and without TLS its bearer tokens and answers would cross the network in the clear: give --tls-cert and --tls-key, listen on 127.0.0.1, or, behind a TLS-terminating proxy on a network you trust, --insecure-listen",
			policy.ErrInvalid, l.flag, l.addr)
	}
	return cs, nil
}
