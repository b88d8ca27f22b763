package agentstream

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// WithTLS makes Dial connect over TLS with config; nil verifies the server against the system's CAs.
// Build config with TLSConfig (a CA file, and a client certificate for mTLS) or by hand.
func WithTLS(config *tls.Config) grpc.DialOption {
	if config == nil {
		config = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(config))
}

// TLSConfig reads PEM files into a client TLS configuration: caFile, when not empty, is the CA the
// server's certificate must chain to (instead of the system's CAs); certFile and keyFile, when not
// empty, are the client certificate and its key, presented to a server that requires one (mTLS).
// Errors name the file at fault.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("agentstream: cannot read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("agentstream: CA file %s holds no PEM certificate", caFile)
		}
		config.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("agentstream: a client certificate needs its key: certFile %q, keyFile %q", certFile, keyFile)
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("agentstream: cannot load client certificate %s with key %s: %w", certFile, keyFile, err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return config, nil
}
