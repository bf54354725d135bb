package etcdv3

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// tlsConfig builds the client TLS settings from the PEM files in cfg, or returns nil when
// none is set (then https:// endpoints use the system roots, as the etcd client does).
// Each file is read on its own so that an error names the field, its flag and the path.
func tlsConfig(cfg Config) (*tls.Config, error) {
	if cfg.KeyFile == "" && cfg.CertFile == "" && cfg.CAFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := readPEM("CAFile", "--etcd-cafile", cfg.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CAFile (--etcd-cafile) %q: no PEM certificate in it", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	switch {
	case cfg.CertFile == "" && cfg.KeyFile == "":
		// Server authentication only.
	case cfg.CertFile == "":
		return nil, errors.New("etcd KeyFile (--etcd-keyfile) is set but CertFile (--etcd-certfile) is not")
	case cfg.KeyFile == "":
		return nil, errors.New("etcd CertFile (--etcd-certfile) is set but KeyFile (--etcd-keyfile) is not")
	default:
		certPEM, err := readPEM("CertFile", "--etcd-certfile", cfg.CertFile)
		if err != nil {
			return nil, err
		}
		keyPEM, err := readPEM("KeyFile", "--etcd-keyfile", cfg.KeyFile)
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("etcd CertFile (--etcd-certfile) %q with KeyFile (--etcd-keyfile) %q: %w", cfg.CertFile, cfg.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func readPEM(field, flag, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("etcd %s (%s) %q: %w", field, flag, path, err)
	}
	return b, nil
}
