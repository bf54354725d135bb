package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// StopTimeout bounds how long Stop waits after SIGTERM before it sends SIGKILL.
	StopTimeout = 15 * time.Second
	// killTimeout bounds the wait for the kernel to reap a SIGKILLed process.
	killTimeout = 10 * time.Second
)

// runHeader starts the line written to the log before each run.
const runHeader = "=== weft cluster:"

// ErrStillRunning is returned by Wait when weftd has not exited in time.
var ErrStillRunning = errors.New("weftd still running")

// ErrStopTimeout is returned by Stop when weftd ignored SIGTERM for StopTimeout.
var ErrStopTimeout = errors.New("weftd did not exit after SIGTERM")

// WeftdOptions adjust one weftd's command line and environment.
type WeftdOptions struct {
	// Args are appended after the default flags. A repeated scalar flag overrides the
	// default, but weftd's --iface is a list that accumulates: to choose another interface
	// (or none), Omit "iface" and pass your own.
	Args []string
	// Env holds extra KEY=value variables, e.g. FLANNELD_IP_MASQ=true.
	Env []string
	// Omit names default flags to leave out, without dashes: "iface", "etcd-endpoints",
	// "subnet-file", "healthz-ip", "healthz-port", "etcd-prefix".
	Omit []string
}

// Weftd is one weftd process slot on a node: it can be stopped, killed and started again
// with the same command line. Its output (every run, appended) goes to LogPath.
type Weftd struct {
	c       *Cluster
	node    int
	args    []string // weftd's arguments, after the binary
	env     []string // full environment
	bin     string
	logPath string

	mu  sync.Mutex // guards cur
	cur *weftdRun  // the latest run; nil before the first start
}

// weftdRun is one started process.
type weftdRun struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed once the process has been reaped
	err  error         // cmd.Wait's result; read only after done is closed
}

// defaultFlags are weftd's flags for node i, in command-line order.
func (c *Cluster) defaultFlags(i int) [][2]string {
	flags := [][2]string{
		{"etcd-endpoints", strings.Join(c.EtcdEndpoints(), ",")},
		{"iface", "eth0"},
		{"subnet-file", c.SubnetFile(i)},
		{"healthz-ip", "127.0.0.1"},
		{"healthz-port", "0"},
	}
	if c.opts.EtcdPrefix != "" {
		flags = append(flags, [2]string{"etcd-prefix", c.opts.EtcdPrefix})
	}
	return flags
}

// TryStartNode starts weftd in node i's namespace:
//
//	WIREGUARD_KEY_FILE=<NodeDir>/wgkey WEFT_WIREGUARD_SOCKET_DIR=<NodeDir>/wireguard \
//	ip netns exec <node ns> <weftd> --etcd-endpoints <EtcdEndpoints, comma-separated> --iface eth0 \
//	    --subnet-file <NodeDir>/subnet.env --healthz-ip 127.0.0.1 --healthz-port 0 \
//	    [--etcd-prefix <Options.EtcdPrefix>] <o.Args...>
//
// with output to <NodeDir>/weftd-<n>.log. It does not wait for weftd to be ready (see
// WaitSubnetEnv). weftd is built on first use when Options.WeftdPath is empty.
func (c *Cluster) TryStartNode(i int, o WeftdOptions) (*Weftd, error) {
	c.checkNode(i)
	if c.isClosed() {
		return nil, fmt.Errorf("start weftd on node %d: %w", i, ErrClosed)
	}
	bin, err := c.weftBin.resolve()
	if err != nil {
		return nil, fmt.Errorf("weftd binary: %w", err)
	}
	var args []string
	for _, f := range c.defaultFlags(i) {
		if !slices.Contains(o.Omit, f[0]) {
			args = append(args, "--"+f[0], f[1])
		}
	}
	args = append(args, o.Args...)
	env := childEnv(os.Environ())
	// The nodes share one mount namespace: /run/flannel/wgkey would give them all one
	// WireGuard key, and /var/run/wireguard one configuration socket per device name.
	env = append(env, "WIREGUARD_KEY_FILE="+c.WireGuardKeyFile(i))
	env = append(env, "WEFT_WIREGUARD_SOCKET_DIR="+c.WireGuardSocketDir(i))
	env = append(env, c.opts.WeftdEnv...)
	env = append(env, o.Env...)

	c.mu.Lock()
	n := c.weftdSeq
	c.weftdSeq++
	c.mu.Unlock()
	w := &Weftd{
		c: c, node: i, args: args, env: env, bin: bin,
		logPath: filepath.Join(c.NodeDir(i), fmt.Sprintf("weftd-%d.log", n)),
	}
	if err := w.Start(); err != nil {
		return nil, err
	}
	return w, nil
}

// WireGuardKeyFile is node i's WireGuard private key file (WIREGUARD_KEY_FILE of every
// weftd the cluster starts there; Options.WeftdEnv or WeftdOptions.Env may override it).
func (c *Cluster) WireGuardKeyFile(i int) string { return filepath.Join(c.NodeDir(i), "wgkey") }

// WireGuardSocketDir is where node i's userspace WireGuard devices serve their
// configuration sockets for wg (WEFT_WIREGUARD_SOCKET_DIR of every weftd the cluster
// starts there).
func (c *Cluster) WireGuardSocketDir(i int) string { return filepath.Join(c.NodeDir(i), "wireguard") }

// StartNodeWith is TryStartNode, fatal on error.
func (c *Cluster) StartNodeWith(i int, o WeftdOptions) *Weftd {
	if c.t != nil {
		c.t.Helper()
	}
	w, err := c.TryStartNode(i, o)
	if err != nil {
		c.fatal(fmt.Errorf("start weftd on node %d: %w", i, err))
	}
	return w
}

// StartNode starts weftd on node i with extra arguments; fatal on error.
func (c *Cluster) StartNode(i int, extraArgs ...string) *Weftd {
	if c.t != nil {
		c.t.Helper()
	}
	return c.StartNodeWith(i, WeftdOptions{Args: extraArgs})
}

// childEnv drops the caller's FLANNELD_* and WEFT* variables, which would change weftd's
// configuration behind the test's back.
func childEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "FLANNELD_") || strings.HasPrefix(kv, "WEFT") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// Start launches weftd (again); it fails if this slot's process is still running.
func (w *Weftd) Start() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur != nil && !w.cur.exited() {
		return fmt.Errorf("weftd on node %d already running (pid %d)", w.node, w.cur.pid)
	}
	logf, err := os.OpenFile(w.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("weftd log: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor
	fmt.Fprintf(logf, "%s %s starting weftd on node %d: %s %s\n",
		runHeader, time.Now().Format("15:04:05.000"), w.node, w.bin, strings.Join(w.args, " "))

	ns := w.c.NodeNS(w.node)
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, w.bin}, w.args...)...)
	cmd.Env = w.env
	cmd.Stdout, cmd.Stderr = logf, logf
	// ip netns exec execs weftd, so the PID is weftd's. It dies with this process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}

	// Launch under the cluster lock so that Close either sees this process or refuses it.
	w.c.mu.Lock()
	if w.c.closed {
		w.c.mu.Unlock()
		return fmt.Errorf("start weftd on node %d: %w", w.node, ErrClosed)
	}
	if err := cmd.Start(); err != nil {
		w.c.mu.Unlock()
		return fmt.Errorf("start weftd on node %d: %w", w.node, err)
	}
	if !slices.Contains(w.c.weftds, w) {
		w.c.weftds = append(w.c.weftds, w)
	}
	w.c.mu.Unlock()

	r := &weftdRun{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	w.cur = r
	return nil
}

func (r *weftdRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (w *Weftd) current() *weftdRun {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// Stop sends SIGTERM and waits up to StopTimeout, then SIGKILLs. It returns the exit error
// (nil when weftd exited with status 0; an *exec.ExitError otherwise), or an error wrapping
// ErrStopTimeout. Stopping a stopped weftd returns its last exit error.
func (w *Weftd) Stop() error {
	r := w.current()
	if r == nil {
		return nil
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM) // os.ErrProcessDone once reaped: harmless
	select {
	case <-r.done:
		return r.err
	case <-time.After(StopTimeout):
	}
	if err := w.kill(); err != nil {
		return err
	}
	return fmt.Errorf("node %d pid %d: %w within %v; killed", w.node, r.pid, ErrStopTimeout, StopTimeout)
}

// Kill sends SIGKILL and waits (bounded) until the process is reaped.
func (w *Weftd) Kill() {
	_ = w.kill()
}

func (w *Weftd) kill() error {
	r := w.current()
	if r == nil {
		return nil
	}
	_ = r.cmd.Process.Kill()
	select {
	case <-r.done:
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("weftd on node %d (pid %d) not reaped %v after SIGKILL", w.node, r.pid, killTimeout)
	}
}

// Signal sends sig to the running weftd.
func (w *Weftd) Signal(sig os.Signal) error {
	r := w.current()
	if r == nil {
		return errors.New("weftd never started")
	}
	return r.cmd.Process.Signal(sig)
}

// Restart stops weftd (SIGTERM, as Stop; its exit status is ignored) and starts it again
// with the same command line. It returns Start's error.
func (w *Weftd) Restart() error {
	_ = w.Stop()
	return w.Start()
}

// Wait waits up to timeout for weftd to exit on its own and returns its exit error (nil for
// status 0), or an error wrapping ErrStillRunning.
func (w *Weftd) Wait(timeout time.Duration) error {
	r := w.current()
	if r == nil {
		return errors.New("weftd never started")
	}
	select {
	case <-r.done:
		return r.err
	case <-time.After(timeout):
		return fmt.Errorf("node %d pid %d after %v: %w", w.node, r.pid, timeout, ErrStillRunning)
	}
}

// Running reports whether the latest process has not exited yet.
func (w *Weftd) Running() bool {
	r := w.current()
	return r != nil && !r.exited()
}

// PID is the latest process's PID (it may have exited; see Running).
func (w *Weftd) PID() int {
	if r := w.current(); r != nil {
		return r.pid
	}
	return 0
}

// Node is the node number weftd runs on.
func (w *Weftd) Node() int { return w.node }

// Args are weftd's command-line arguments (after the binary).
func (w *Weftd) Args() []string { return slices.Clone(w.args) }

// LogPath is the file holding weftd's stdout and stderr, every run appended, each run
// preceded by a line starting "=== weft cluster:".
func (w *Weftd) LogPath() string { return w.logPath }

// Log returns the log's content so far ("" if it cannot be read).
func (w *Weftd) Log() string {
	b, err := os.ReadFile(w.logPath)
	if err != nil {
		return ""
	}
	return string(b)
}

// RunLog is the output of the latest run only (after its "=== weft cluster:" line).
func (w *Weftd) RunLog() string {
	log := w.Log()
	if i := strings.LastIndex(log, runHeader); i >= 0 {
		if nl := strings.IndexByte(log[i:], '\n'); nl >= 0 {
			return log[i+nl+1:]
		}
		return ""
	}
	return log
}

// WaitLog waits for the latest run's output to contain substr, up to timeout and at least
// MinLogWait (a hang bound: a loaded machine may take longer than expected; the caller does
// not fail on speed). It fails early if that run exits without printing it.
func (w *Weftd) WaitLog(substr string, timeout time.Duration) error {
	timeout = max(timeout, MinLogWait)
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(w.RunLog(), substr) {
			return nil
		}
		r := w.current()
		if r == nil || r.exited() {
			if strings.Contains(w.RunLog(), substr) { // printed just before exiting
				return nil
			}
			return fmt.Errorf("%s exited without logging %q", w, substr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not log %q within %v", w, substr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MinLogWait is the shortest wait WaitLog makes before it gives up.
const MinLogWait = 15 * time.Second

// String names the process for messages.
func (w *Weftd) String() string {
	return "weftd[node" + strconv.Itoa(w.node) + " pid " + strconv.Itoa(w.PID()) + "]"
}
