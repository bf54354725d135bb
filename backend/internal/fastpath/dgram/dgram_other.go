//go:build !linux

package dgram

import (
	"errors"
	"io"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

// errNotLinux: the batch system calls this package makes are Linux's.
var errNotLinux = errors.New("dgram.Conn is supported on Linux only")

// Conn is a fastpath.Conn over an IPv4 or IPv6 datagram socket; Linux only.
type Conn struct{}

var _ fastpath.Conn = (*Conn)(nil)

// Options configure NewWith.
type Options struct {
	Batch   int
	Offload bool
	Log     klog.Logger
}

// New reports an error on this platform.
func New(sock interface {
	syscall.Conn
	io.Closer
}, batch int) (*Conn, error) {
	return nil, errNotLinux
}

// NewWith reports an error on this platform.
func NewWith(sock interface {
	syscall.Conn
	io.Closer
}, o Options) (*Conn, error) {
	return New(sock, o.Batch)
}

// BatchSize implements fastpath.Conn.
func (c *Conn) BatchSize() int { return 1 }

// Offloads reports "off": there are none on this platform.
func (c *Conn) Offloads() string { return "off" }

// OwnsReadBuffers reports false: Read would use the slots' buffers.
func (c *Conn) OwnsReadBuffers() bool { return false }

// Read implements fastpath.Conn.
func (c *Conn) Read(pkts []fastpath.Packet) (int, error) { return 0, errNotLinux }

// Write implements fastpath.Conn.
func (c *Conn) Write(pkts []fastpath.Packet) (int, error) { return 0, errNotLinux }

// Close implements fastpath.Conn.
func (c *Conn) Close() error { return nil }

// BufferSize is the socket buffer size asked for on Linux.
const BufferSize = 4 << 20

// EnlargeBuffers is only implemented on Linux.
func EnlargeBuffers(syscall.Conn) error {
	return errors.New("dgram.EnlargeBuffers is supported on Linux only")
}
