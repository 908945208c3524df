package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
)

// Option configures a Client.
type Option func(*options)

type options struct {
	caFile string
	wrap   func(http.RoundTripper) http.RoundTripper
}

// WithCAFile verifies an https daemon against the CA certificates (PEM) in path only,
// instead of the system's roots: a platform's own CA (--ca-file, VEIL_CA_FILE).
func WithCAFile(path string) Option { return func(o *options) { o.caFile = path } }

// WithTransport wraps the client's transport, e.g. to check every request and answer
// against the API's description in tests.
func WithTransport(wrap func(http.RoundTripper) http.RoundTripper) Option {
	return func(o *options) { o.wrap = wrap }
}

// maxCAFile bounds the CA file read: a few certificates.
const maxCAFile = 1 << 20

func (o options) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.caFile == "" {
		return tc, nil
	}
	f, err := os.Open(o.caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	defer f.Close()
	pem, err := io.ReadAll(io.LimitReader(f, maxCAFile+1))
	if err != nil {
		return nil, fmt.Errorf("read CA file %s: %w", o.caFile, err)
	}
	if len(pem) > maxCAFile {
		return nil, fmt.Errorf("CA file %s is larger than %d bytes: give the PEM certificates of the CA only", o.caFile, maxCAFile)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", o.caFile)
	}
	tc.RootCAs = pool
	return tc, nil
}

// unreachable is the error of a request that got no answer, saying what to check.
func unreachable(err error) *Error {
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) {
		return &Error{Kind: "unavailable", Msg: fmt.Sprintf("the Veil daemon's TLS certificate is not trusted: %v (give the platform's CA with --ca-file or VEIL_CA_FILE)", verr.Err)}
	}
	return &Error{Kind: "unavailable", Msg: fmt.Sprintf("cannot reach the Veil daemon: %v (is `veil serve` running? set --host or VEIL_HOST)", err)}
}
