package etcdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// PKI is a throwaway certificate authority for TLS tests, with PEM files in Dir: the CA, a
// server certificate for the given addresses (usable as a client too, as etcd's peers and
// gateway need), and client certificates on demand. OtherCAFile is an unrelated CA, for
// "wrong CA" tests. Certificates are valid for a day from an hour ago.
type PKI struct {
	Dir                           string
	CAFile                        string
	ServerCertFile, ServerKeyFile string
	OtherCAFile                   string

	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey

	mu     sync.Mutex // guards serial
	serial int64
}

// NewPKI writes a CA, a server certificate for serverIPs (127.0.0.1 is always included)
// and an unrelated second CA into dir.
func NewPKI(dir string, serverIPs ...netip.Addr) (*PKI, error) {
	p := &PKI{Dir: dir, serial: 10}
	var err error
	if p.ca, p.caKey, p.CAFile, err = p.newCA("ca", "weft test CA"); err != nil {
		return nil, err
	}
	if _, _, p.OtherCAFile, err = p.newCA("other-ca", "some other CA"); err != nil {
		return nil, err
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, a := range serverIPs {
		ips = append(ips, net.IP(a.AsSlice()))
	}
	p.ServerCertFile, p.ServerKeyFile, err = p.leaf("server", "etcd server", ips, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// ClientCert writes a client certificate with common name cn (etcd maps it to a user when
// --client-cert-auth and auth are on) and returns its certificate and key files.
func (p *PKI) ClientCert(cn string) (certFile, keyFile string, err error) {
	return p.leaf("client-"+cn, cn, nil, x509.ExtKeyUsageClientAuth)
}

// ServerArgs are etcd's flags to serve clients over TLS with the server certificate, and
// with clientCertAuth to require client certificates signed by the CA.
func (p *PKI) ServerArgs(clientCertAuth bool) []string {
	args := []string{"--cert-file", p.ServerCertFile, "--key-file", p.ServerKeyFile, "--trusted-ca-file", p.CAFile}
	if clientCertAuth {
		args = append(args, "--client-cert-auth")
	}
	return args
}

// ClientTLS returns a client TLS config trusting the CA, presenting the given certificate
// (none when certFile is empty).
func (p *PKI) ClientTLS(certFile, keyFile string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (p *PKI) nextSerial() *big.Int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serial++
	return big.NewInt(p.serial)
}

func (p *PKI) newCA(file, cn string) (*x509.Certificate, *ecdsa.PrivateKey, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          p.nextSerial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, "", err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, "", err
	}
	path, err := writePEM(p.Dir, file+".pem", "CERTIFICATE", der)
	return cert, key, path, err
}

func (p *PKI) leaf(file, cn string, ips []net.IP, usage ...x509.ExtKeyUsage) (string, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: p.nextSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, err := writePEM(p.Dir, file+".pem", "CERTIFICATE", der)
	if err != nil {
		return "", "", err
	}
	keyFile, err := writePEM(p.Dir, file+"-key.pem", "EC PRIVATE KEY", kder)
	return certFile, keyFile, err
}

func writePEM(dir, name, typ string, der []byte) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}
