package agentstream_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/agentstream/agentstream/clients/go/agentstream"
	pb "github.com/agentstream/agentstream/clients/go/agentstreamv1"
)

// tlsScenarios run again over TLS and mTLS: streaming with a tool call, an error status, a resumed
// subscription through a proxy (a second TLS handshake), and an approval from a second connection.
var tlsScenarios = []string{"calculator_core", "unknown_agent", "resume", "approval"}

// TestScenariosOverTLS runs tlsScenarios against `make interop`'s TLS server (AGENTSTREAM_INTEROP_TLS_TARGET,
// verified against AGENTSTREAM_INTEROP_CA) and its mTLS server (AGENTSTREAM_INTEROP_MTLS_TARGET, with the
// client certificate AGENTSTREAM_INTEROP_CERT and _KEY), and checks the mTLS server refuses a client
// without a certificate.
func TestScenariosOverTLS(t *testing.T) {
	ca := os.Getenv("AGENTSTREAM_INTEROP_CA")
	if ca == "" {
		t.Skip("needs make interop's TLS and mTLS servers")
	}
	byName := map[string]scenario{}
	for _, s := range loadScenarios(t) {
		byName[s.Name] = s
	}
	for _, c := range []struct{ name, address, cert, key string }{
		{"TLS", os.Getenv("AGENTSTREAM_INTEROP_TLS_TARGET"), "", ""},
		{"mTLS", os.Getenv("AGENTSTREAM_INTEROP_MTLS_TARGET"), os.Getenv("AGENTSTREAM_INTEROP_CERT"), os.Getenv("AGENTSTREAM_INTEROP_KEY")},
	} {
		t.Run(c.name, func(t *testing.T) {
			config, err := agentstream.TLSConfig(ca, c.cert, c.key)
			if err != nil {
				t.Fatal(err)
			}
			client, err := agentstream.Dial(c.address, agentstream.WithTLS(config))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			for _, name := range tlsScenarios {
				s, ok := byName[name]
				if !ok {
					t.Fatalf("no scenario %q", name)
				}
				t.Run(name, func(t *testing.T) {
					switch {
					case s.Resume != nil:
						runResumeScenario(t, client, c.address, s, agentstream.WithTLS(config))
					case s.Approval != nil:
						runApprovalScenario(t, c.address, s, agentstream.WithTLS(config))
					default:
						runScenario(t, client, s)
					}
				})
			}
		})
	}
	t.Run("mTLS refuses a client without a certificate", func(t *testing.T) {
		config, err := agentstream.TLSConfig(ca, "", "")
		if err != nil {
			t.Fatal(err)
		}
		client, err := agentstream.Dial(os.Getenv("AGENTSTREAM_INTEROP_MTLS_TARGET"), agentstream.WithTLS(config))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := client.StreamingRun(ctx, "hello", agentstream.RunOptions{Mode: pb.StreamingMode_STREAMING_MODE_CHUNK})
		if err == nil {
			for _, err = range stream.All() {
				if err != nil {
					break
				}
			}
		}
		var typed *agentstream.Error
		if !errors.As(err, &typed) || typed.Code != codes.Unavailable {
			t.Fatalf("want Unavailable without a client certificate, got %v", err)
		}
	})
}

func TestTLSConfigErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ ca, cert, key, want string }{
		{filepath.Join(dir, "missing.pem"), "", "", "missing.pem"},
		{notPEM, "", "", "not.pem holds no PEM certificate"},
		{"", notPEM, "", "needs its key"},
		{"", notPEM, notPEM, "cannot load client certificate " + notPEM},
	} {
		_, err := agentstream.TLSConfig(c.ca, c.cert, c.key)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("TLSConfig(%q, %q, %q) = %v, want an error with %q", c.ca, c.cert, c.key, err, c.want)
		}
	}
	if config, err := agentstream.TLSConfig("", "", ""); err != nil || config.RootCAs != nil {
		t.Errorf("TLSConfig with no files: %v, %v; want the system's CAs", config, err)
	}
}
