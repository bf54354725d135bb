// Package etcdtest starts real etcd servers (Debian's etcd-server, /usr/bin/etcd) for tests,
// benchmarks and the demo: on loopback with free ports, or inside a network namespace on a
// given address. It never mocks etcd.
//
// A Server can be stopped and started again on the same data directory (for outage tests).
// A Cluster is several members of one etcd cluster (for leader-loss and quorum-loss tests).
// PKI writes a throwaway CA and certificates for TLS tests. Every process started here is
// stopped by PID when the test ends.
//
// Free ports are picked below the kernel's ephemeral range (so that no outgoing connection
// takes one while a server is stopped for an outage) and reserved with a lock file for as
// long as the server may use them, so that servers of test packages running in parallel
// never share a port. A server counts as started only when its own process says it serves
// on its client address (and, over plain HTTP outside a namespace, /health answers); if the
// process exits first, Start returns at once with its log.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
	// ports holds the lock files of the ports New picked, released by release.
	ports []*os.File

	mu  sync.Mutex // guards cmd, exited and logOffset
	cmd *exec.Cmd
	// exited is closed when cmd's process has exited and been reaped.
	exited <-chan struct{}
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
	t.Cleanup(func() {
		s.Stop()
		s.release()
	})
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
	s := &Server{
		opts:    opts,
		dataDir: filepath.Join(opts.Dir, "data"),
		logPath: filepath.Join(opts.Dir, "etcd.log"),
	}
	for _, port := range []*int{&s.opts.ClientPort, &s.opts.PeerPort} {
		if *port != 0 {
			continue
		}
		p, lock, err := reservePort()
		if err != nil {
			s.release()
			return nil, err
		}
		*port = p
		s.ports = append(s.ports, lock)
	}
	return s, nil
}

// release gives up the ports New reserved. The server must not be started again.
func (s *Server) release() {
	for _, f := range s.ports {
		f.Close() // drops the lock
	}
	s.ports = nil
}

// Ports are picked in [portLow, portHigh): below Linux's default ephemeral range (32768-60999),
// so that the kernel never gives one to an outgoing connection.
const portLow, portHigh = 20000, 32000

// reservePort picks a loopback port that is free now and that no other user of this package
// (in any process) holds, and holds it: the returned file's lock reserves it until closed
// (or the process ends).
func reservePort() (int, *os.File, error) {
	dir := filepath.Join(os.TempDir(), "weft-etcdtest-ports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, nil, err
	}
	start := portLow + rand.IntN(portHigh-portLow)
	for i := 0; i < portHigh-portLow; i++ {
		port := portLow + (start-portLow+i*7919)%(portHigh-portLow) // 7919 is prime: every port once
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return 0, nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // held by another server
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			f.Close() // in use by something else
			continue
		}
		l.Close()
		return port, f, nil
	}
	return 0, nil, fmt.Errorf("no free port in %d-%d", portLow, portHigh-1)
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
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status is in cmd.ProcessState
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	return nil
}

// waitHealthyLocked waits until this run's output says that it serves client traffic on
// this server's client address (proof that this process, not another etcd, holds the port)
// and, where it can be reached from here (plain HTTP, this namespace), /health answers OK.
// It fails at once if the process exits.
func (s *Server) waitHealthyLocked(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	serving, healthy := false, s.opts.Netns != "" || s.opts.Scheme != "http"
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("etcd exited (%v) before serving", s.cmd.ProcessState)
		default:
		}
		if !serving {
			b, _ := os.ReadFile(s.logPath)
			if int64(len(b)) >= s.logOffset {
				b = b[s.logOffset:] // this run's output only
			}
			serving = servesOn(string(b), net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.ClientPort)))
		}
		if serving && !healthy {
			healthy = s.healthOK(time.Until(deadline))
		}
		if serving && healthy {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v (serving on its address logged: %v, /health OK: %v)", timeout, serving, healthy)
		}
		select {
		case <-s.exited:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// servesOn reports whether etcd's output has a line saying that it serves client traffic on
// addr (host:port). zap (--logger zap) says `"msg":"serving client traffic insecurely; ...",
// "address":"127.0.0.1:2379"` (or "securely"); capnslog `serving insecure client requests on
// 127.0.0.1:2379`.
func servesOn(log, addr string) bool {
	for _, line := range strings.Split(log, "\n") {
		if (strings.Contains(line, "serving client traffic") || strings.Contains(line, "client requests on")) &&
			strings.Contains(line, addr) {
			return true
		}
	}
	return false
}

// healthOK asks /health once, within at most timeout (and 2 s).
func (s *Server) healthOK(timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), min(max(timeout, 0), 2*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint()+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
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
	<-s.exited // reaped by launchLocked's goroutine
	s.cmd, s.exited = nil, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
