// Package kubetest starts a real kube-apiserver for tests: the binary built by
// `make kube-apiserver` from k8s.io/kubernetes at Version (see test/kube), run on Debian's
// etcd inside a network namespace, never in the root one. It never fakes the API server.
//
// The server authorizes with RBAC and signs service-account tokens with a throwaway key, so
// that a test can give weftd exactly what a DaemonSet pod would have: a ServiceAccount token
// bound to a ClusterRole (ServiceAccountToken, WriteKubeconfig). The test itself talks to it
// as an administrator (AdminClient) over connections dialled inside the namespace. Every
// process started here is stopped by PID when the test ends.
package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/etcdtest"
	"github.com/weftnet/weft/test/nstest"
)

// Version is the Kubernetes release the tests run against; test/kube/go.mod pins the same.
const Version = "v1.37.2"

// BinaryEnv names the variable that overrides where the kube-apiserver binary is.
const BinaryEnv = "WEFT_KUBE_APISERVER"

// DefaultBinary is where `make kube-apiserver` caches the binary (outside the repository,
// keyed by version, so that a fresh clone or another worktree reuses it).
const DefaultBinary = "/var/cache/weft-test/kube-apiserver-" + Version

// Binary is the kube-apiserver to run: $WEFT_KUBE_APISERVER, else DefaultBinary.
func Binary() string {
	if p := os.Getenv(BinaryEnv); p != "" {
		return p
	}
	return DefaultBinary
}

// Available reports why a kube-apiserver cannot be started here, or nil.
func Available() error {
	if err := nstest.Available(); err != nil {
		return err
	}
	if err := etcdtest.Available(); err != nil {
		return err
	}
	if _, err := os.Stat(Binary()); err != nil {
		return fmt.Errorf("kube-apiserver %s not built (run `make kube-apiserver`): %w", Binary(), err)
	}
	return nil
}

// Options choose where the server runs.
type Options struct {
	// Netns is the namespace to run in; empty: a throwaway namespace with loopback only.
	Netns string
	// Host is the address to serve and advertise on (it must exist in Netns); 127.0.0.1 by
	// default.
	Host netip.Addr
	// Port is the secure port; 6443 by default.
	Port int
	// EtcdEndpoint is an etcd reachable from Netns; empty: an etcd of its own on Host, in
	// Netns, on ports 2379 and 2380.
	EtcdEndpoint string
	// Dir holds the certificates, keys and the log; t.TempDir() by default.
	Dir string
}

// startTimeout bounds the wait for /readyz (the machine may be busy).
const startTimeout = 90 * time.Second

// Server is a running kube-apiserver.
type Server struct {
	opts       Options
	pki        *etcdtest.PKI
	adminToken string
	logPath    string
	args       []string

	mu     sync.Mutex    // guards cmd and exited
	cmd    *exec.Cmd     // nil while stopped
	exited chan struct{} // closed once cmd has been reaped
}

// Start starts a kube-apiserver for t and stops it when t ends. The test is skipped with the
// reason when the binary, etcd or namespaces are not available here.
func Start(t nstest.TB, opts Options) *Server {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Netns == "" {
		opts.Netns = nstest.Temp(t, "kapi")
	}
	if !opts.Host.IsValid() {
		opts.Host = netip.MustParseAddr("127.0.0.1")
	}
	if opts.Port == 0 {
		opts.Port = 6443
	}
	if opts.EtcdEndpoint == "" {
		if err := os.MkdirAll(filepath.Join(opts.Dir, "etcd"), 0o755); err != nil {
			t.Fatal(err)
		}
		e := etcdtest.Start(t, etcdtest.Options{Netns: opts.Netns, Host: opts.Host.String(),
			ClientPort: 2379, PeerPort: 2380, Dir: filepath.Join(opts.Dir, "etcd")})
		opts.EtcdEndpoint = e.Endpoint()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// New writes the server's certificates and keys without starting it; callers own Stop.
func New(opts Options) (*Server, error) {
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	pki, err := etcdtest.NewPKI(opts.Dir, opts.Host)
	if err != nil {
		return nil, fmt.Errorf("apiserver certificates: %w", err)
	}
	s := &Server{opts: opts, pki: pki, logPath: filepath.Join(opts.Dir, "kube-apiserver.log")}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	s.adminToken = hex.EncodeToString(tok)
	tokens := filepath.Join(opts.Dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(s.adminToken+`,weft-test-admin,weft-test-admin,"system:masters"`+"\n"), 0o600); err != nil {
		return nil, err
	}
	saKey, saPub, err := writeSigningKey(opts.Dir)
	if err != nil {
		return nil, err
	}
	s.args = []string{
		"--etcd-servers", opts.EtcdEndpoint,
		"--bind-address", opts.Host.String(),
		"--advertise-address", opts.Host.String(),
		"--secure-port", strconv.Itoa(opts.Port),
		// The default reconciler writes the advertise address into the kubernetes
		// Service's endpoints and refuses a loopback one; nothing here needs them.
		"--endpoint-reconciler-type", "none",
		"--tls-cert-file", pki.ServerCertFile,
		"--tls-private-key-file", pki.ServerKeyFile,
		"--cert-dir", filepath.Join(opts.Dir, "certs"),
		"--token-auth-file", tokens,
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", saPub,
		"--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--profiling=false",
	}
	return s, nil
}

// writeSigningKey writes the service-account signing key pair.
func writeSigningKey(dir string) (keyFile, pubFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", err
	}
	keyFile, pubFile = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return "", "", err
	}
	return keyFile, pubFile, nil
}

// Start launches the server (again, after Stop) and waits until /readyz answers ok.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("kube-apiserver already running")
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", s.opts.Netns, Binary()}, s.args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	s.cmd = cmd
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	if err := s.waitReady(exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		s.cmd = nil
		log, _ := os.ReadFile(s.logPath)
		return fmt.Errorf("kube-apiserver at %s did not become ready: %w\n%s", s.URL(), err, tail(log, 3000))
	}
	s.exited = exited
	return nil
}

func (s *Server) waitReady(exited <-chan struct{}) error {
	cs, err := s.AdminClient()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return nil
		}
		last = err
		select {
		case <-exited:
			return errors.New("kube-apiserver exited")
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out after %v (last: %v)", startTimeout, last)
}

// Stop kills the server (SIGKILL: an outage, not a drain) and waits for it; stopping a
// stopped server does nothing. The data stays in etcd, so Start brings it back as it was.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// URL is the server's address, e.g. https://127.0.0.1:6443.
func (s *Server) URL() string {
	return "https://" + net.JoinHostPort(s.opts.Host.String(), strconv.Itoa(s.opts.Port))
}

// CAFile is the PEM file of the CA that signed the serving certificate.
func (s *Server) CAFile() string { return s.pki.CAFile }

// Netns is the namespace the server runs in.
func (s *Server) Netns() string { return s.opts.Netns }

// LogPath is the server's combined output.
func (s *Server) LogPath() string { return s.logPath }

// RESTConfig is a client config for the server with the given bearer token, whose
// connections are dialled inside the server's namespace (usable from the test process).
func (s *Server) RESTConfig(token string) *rest.Config {
	ns := s.opts.Netns
	return &rest.Config{
		Host:            s.URL(),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: s.pki.CAFile},
		Timeout:         30 * time.Second,
		QPS:             500, Burst: 1000,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := nsutil.Do(ns, func() error {
				var d net.Dialer
				var err error
				conn, err = d.DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}
}

// AdminClient is a client in the group system:masters.
func (s *Server) AdminClient() (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(s.RESTConfig(s.adminToken))
}

// ServiceAccountToken makes sure the ServiceAccount namespace/name exists and returns a
// token for it from the TokenRequest API, valid for an hour, as the kubelet would project
// into a pod.
func (s *Server) ServiceAccountToken(ctx context.Context, namespace, name string) (string, error) {
	cs, err := s.AdminClient()
	if err != nil {
		return "", err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create service account %s/%s: %w", namespace, name, err)
	}
	secs := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// WriteKubeconfig writes a kubeconfig for the server (its URL and CA) with token to path.
func (s *Server) WriteKubeconfig(path, token string) error {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: weft-test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: weft
  user:
    token: %s
contexts:
- name: weft
  context: {cluster: weft-test, user: weft}
current-context: weft
`, s.URL(), s.pki.CAFile, token)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
