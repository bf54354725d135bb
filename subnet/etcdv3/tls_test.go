package etcdv3_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/subnet/etcdv3"
	"github.com/weftnet/weft/test/etcdtest"
)

// pki is a throwaway CA with a server certificate for 127.0.0.1 and a client certificate,
// written as PEM files.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey := genKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "weft test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := pki{ca: writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)}
	leaf := func(name string, serial int64, usage ...x509.ExtKeyUsage) (string, string) {
		k := genKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  usage,
			IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	// etcd's gateway dials etcd itself with the server certificate, so it is a client too.
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func genKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTLSClientCertificates(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	srv := etcdtest.Start(t, etcdtest.Options{
		Scheme: "https",
		ExtraArgs: []string{
			"--cert-file", p.serverCert, "--key-file", p.serverKey,
			"--trusted-ca-file", p.ca, "--client-cert-auth",
		},
	})
	log := ktesting.NewLogger(t, ktesting.NewConfig())

	reg, err := etcdv3.New(etcdv3.Config{
		Endpoints: []string{srv.Endpoint()}, Prefix: testPrefix,
		CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ctx := ctxT(t)
	if _, err := reg.CreateLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}, attrs("192.0.2.1"), time.Hour); err != nil {
		t.Fatalf("create over mutual TLS: %v", err)
	}
	if list, err := reg.ListLeases(ctx); err != nil || len(list.Leases) != 1 {
		t.Fatalf("list over mutual TLS: %+v, %v", list, err)
	}

	// Without a client certificate the server refuses us.
	anon, err := etcdv3.New(etcdv3.Config{Endpoints: []string{srv.Endpoint()}, Prefix: testPrefix, CAFile: p.ca}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := anon.ListLeases(short); err == nil {
		t.Fatal("list without a client certificate succeeded against --client-cert-auth")
	}
}

func TestTLSFileErrors(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	missing := filepath.Join(t.TempDir(), "nope.pem")
	notPEM := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ep := []string{"http://127.0.0.1:1"} // never dialled: the files fail first
	for _, tc := range []struct {
		name     string
		cfg      etcdv3.Config
		want     []string
		notExist bool
	}{
		{"missing CA", etcdv3.Config{CAFile: missing}, []string{"CAFile", "--etcd-cafile", missing}, true},
		{"missing cert", etcdv3.Config{CertFile: missing, KeyFile: p.clientKey}, []string{"CertFile", "--etcd-certfile", missing}, true},
		{"missing key", etcdv3.Config{CertFile: p.clientCert, KeyFile: missing}, []string{"KeyFile", "--etcd-keyfile", missing}, true},
		{"CA not PEM", etcdv3.Config{CAFile: notPEM}, []string{"CAFile", notPEM, "no PEM certificate"}, false},
		{"key without cert", etcdv3.Config{KeyFile: p.clientKey}, []string{"KeyFile", "CertFile"}, false},
		{"cert without key", etcdv3.Config{CertFile: p.clientCert}, []string{"CertFile", "KeyFile"}, false},
		{"key does not match", etcdv3.Config{CertFile: p.clientCert, KeyFile: p.serverKey}, []string{p.clientCert, p.serverKey}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Endpoints = ep
			reg, err := etcdv3.New(tc.cfg, ktesting.NewLogger(t, ktesting.NewConfig()))
			if err == nil {
				reg.Close()
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tc.notExist != errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %q: errors.Is(fs.ErrNotExist) = %v, want %v", err, !tc.notExist, tc.notExist)
			}
		})
	}
	if _, err := etcdv3.New(etcdv3.Config{}, ktesting.NewLogger(t, ktesting.NewConfig())); err == nil {
		t.Error("New without endpoints succeeded")
	}
}

func TestUsernamePassword(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)
	for _, step := range []func() error{
		func() error { _, err := e.cli.UserAdd(ctx, "root", "s3cret"); return err },
		func() error { _, err := e.cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := e.cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	log := ktesting.NewLogger(t, ktesting.NewConfig())
	reg, err := etcdv3.New(etcdv3.Config{Endpoints: []string{e.srv.Endpoint()}, Prefix: testPrefix, Username: "root", Password: "s3cret"}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if _, err := reg.CreateLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}, attrs("192.0.2.1"), time.Hour); err != nil {
		t.Fatalf("create with credentials: %v", err)
	}
	if _, err := e.reg.ListLeases(ctx); err == nil {
		t.Fatal("list without credentials succeeded with auth enabled")
	}
	if bad, err := etcdv3.New(etcdv3.Config{Endpoints: []string{e.srv.Endpoint()}, Username: "root", Password: "wrong", DialTimeout: 3 * time.Second}, log); err == nil {
		bad.Close()
		t.Fatal("New with a wrong password succeeded")
	}
}
