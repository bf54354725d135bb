// Package etcdtest starts real etcd servers (Debian's etcd-server, /usr/bin/etcd) for tests,
// benchmarks and the demo: on loopback with free ports, or inside a network namespace on a
// given address. It never mocks etcd.
//
// A Server can be stopped and started again on the same data directory (for outage tests).
// A Cluster is several members of one etcd cluster (for leader-loss and quorum-loss tests).
// PKI writes a throwaway CA and certificates for TLS tests. Every process started here is
// stopped by PID when the test ends.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weftnet/weft/test/nstest"
)

// Binary is the etcd server binary used by default.
const Binary = "/usr/bin/etcd"

// Options choose where the server listens.
type Options struct {
	// Netns, if set, runs etcd inside that named network namespace (ip netns exec).
	Netns string
	// Host is the address to listen on; 127.0.0.1 by default.
	Host string
	// ClientPort and PeerPort; 0 picks free loopback ports (only valid without Netns, or
	// with Netns when the caller gives explicit ports).
	ClientPort, PeerPort int
	// Dir is the data directory's parent; a temp dir by default.
	Dir string
	// ExtraArgs are appended to etcd's command line (e.g. TLS flags).
	ExtraArgs []string
	// Scheme is "http" (default) or "https" for the client URL.
	Scheme string
	// Name is the member name (default "default").
	Name string
	// InitialCluster is etcd's --initial-cluster ("name=peerURL,..."); by default this
	// member alone. Clusters set it.
	InitialCluster string
}

// Server is one running (or stopped) etcd member.
type Server struct {
	opts    Options
	dataDir string
	logPath string

	mu  sync.Mutex // guards cmd and logOffset
	cmd *exec.Cmd
	// logOffset is the size of the log before the current run, so that readiness is read
	// from this run's output only (the log is appended across restarts).
	logOffset int64
}

// Available reports why etcd cannot be started here, or nil.
func Available() error {
	if _, err := os.Stat(Binary); err != nil {
		return fmt.Errorf("etcd server binary %s not found (apt-get install etcd-server): %w", Binary, err)
	}
	return nil
}

// Start starts an etcd server for t and stops it when t ends. The test is skipped with the
// reason if no etcd binary is installed.
func Start(t nstest.TB, opts Options) *Server {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// New prepares a server without starting it; callers own Stop.
func New(opts Options) (*Server, error) {
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Scheme == "" {
		opts.Scheme = "http"
	}
	if opts.Name == "" {
		opts.Name = "default"
	}
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "weft-etcd-")
		if err != nil {
			return nil, err
		}
		opts.Dir = d
	}
	var err error
	if opts.ClientPort == 0 {
		if opts.ClientPort, err = freePort(); err != nil {
			return nil, err
		}
	}
	if opts.PeerPort == 0 {
		if opts.PeerPort, err = freePort(); err != nil {
			return nil, err
		}
	}
	return &Server{
		opts:    opts,
		dataDir: filepath.Join(opts.Dir, "data"),
		logPath: filepath.Join(opts.Dir, "etcd.log"),
	}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Endpoint is the client URL, e.g. http://127.0.0.1:23790.
func (s *Server) Endpoint() string {
	return fmt.Sprintf("%s://%s", s.opts.Scheme, net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.ClientPort)))
}

// PeerURL is the member's peer URL, e.g. http://127.0.0.1:23800.
func (s *Server) PeerURL() string {
	return fmt.Sprintf("http://%s", net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.PeerPort)))
}

// Name is the member name.
func (s *Server) Name() string { return s.opts.Name }

// LogPath is etcd's combined output, useful in failure messages.
func (s *Server) LogPath() string { return s.logPath }

// Running reports whether the server process was started and not stopped.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Start launches etcd (again, after Stop, on the same data) and waits until it serves.
// A member of a multi-member cluster serves only once a quorum is up: start the first
// members with Cluster.Start.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.launchLocked(); err != nil {
		return err
	}
	return s.awaitLocked(startTimeout)
}

// startTimeout bounds the wait for a started member to serve.
const startTimeout = 15 * time.Second

// awaitLocked waits until the launched process serves, or stops it and returns why.
func (s *Server) awaitLocked(timeout time.Duration) error {
	if err := s.waitHealthyLocked(timeout); err != nil {
		s.stopLocked()
		log, _ := os.ReadFile(s.logPath)
		return fmt.Errorf("etcd %s at %s did not become healthy: %w\n%s", s.opts.Name, s.Endpoint(), err, tail(log, 2000))
	}
	return nil
}

// launchLocked starts the process without waiting for it to serve.
func (s *Server) launchLocked() error {
	if s.cmd != nil {
		return errors.New("etcd already running")
	}
	peer := s.PeerURL()
	initial := s.opts.InitialCluster
	if initial == "" {
		initial = s.opts.Name + "=" + peer
	}
	args := []string{
		"--name", s.opts.Name,
		"--data-dir", s.dataDir,
		"--listen-client-urls", s.Endpoint(),
		"--advertise-client-urls", s.Endpoint(),
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", initial,
		"--logger", "zap", "--log-outputs", "stderr",
	}
	args = append(args, s.opts.ExtraArgs...)
	name, argv := Binary, args
	if s.opts.Netns != "" {
		name, argv = "ip", append([]string{"netns", "exec", s.opts.Netns, Binary}, args...)
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if st, err := logf.Stat(); err == nil {
		s.logOffset = st.Size()
	}
	cmd := exec.Command(name, argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH=") // keep etcd's env parsing quiet
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start etcd: %w", err)
	}
	logf.Close()
	s.cmd = cmd
	return nil
}

func (s *Server) waitHealthyLocked(timeout time.Duration) error {
	if s.opts.Netns != "" || s.opts.Scheme != "http" {
		// The health URL is not reachable from here (other namespace, or TLS); wait for
		// etcd to report that it serves client traffic.
		deadline := time.Now().Add(timeout)
		for time.Now().Before(deadline) {
			b, _ := os.ReadFile(s.logPath)
			if int64(len(b)) >= s.logOffset {
				b = b[s.logOffset:] // this run's output only
			}
			// capnslog says the first, zap (etcd 3.4's --logger zap) the second.
			if strings.Contains(string(b), "ready to serve client requests") || strings.Contains(string(b), "serving client traffic") {
				return nil
			}
			if s.cmd.ProcessState != nil {
				return errors.New("etcd exited")
			}
			time.Sleep(50 * time.Millisecond)
		}
		return errors.New("timed out")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint()+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop kills the server (SIGKILL: an outage, not a graceful leave) and waits for it.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
