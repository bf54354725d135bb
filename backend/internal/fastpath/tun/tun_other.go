//go:build !linux

package tun

import (
	"errors"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

// Path is the TUN clone device.
const Path = "/dev/net/tun"

// ErrNoDriver: the kernel offers no TUN driver here.
var ErrNoDriver = errors.New("the udp backend's TUN device is supported on Linux only")

// Check reports ErrNoDriver: TUN devices are supported on Linux only.
func Check() error { return ErrNoDriver }

// Device is a fastpath.Device over a Linux TUN queue; on this platform it cannot be opened.
type Device struct{}

var _ fastpath.Device = (*Device)(nil)

// Open reports ErrNoDriver on this platform.
func Open(name string, persist bool, batch int) (*Device, error) { return nil, ErrNoDriver }

// EnsurePersistent reports ErrNoDriver on this platform.
func EnsurePersistent(name string) error { return ErrNoDriver }

// Name returns the device name.
func (t *Device) Name() string { return "" }

// BatchSize implements fastpath.Device.
func (t *Device) BatchSize() int { return 1 }

// Read implements fastpath.Device.
func (t *Device) Read(pkts []fastpath.Packet) (int, error) { return 0, ErrNoDriver }

// Write implements fastpath.Device.
func (t *Device) Write(pkts []fastpath.Packet) (int, error) { return 0, ErrNoDriver }

// Close implements fastpath.Device.
func (t *Device) Close() error { return nil }

// Options configure OpenWith.
type Options struct {
	Persist bool
	Batch   int
	Offload bool
	Log     klog.Logger
}

// OpenWith reports ErrNoDriver on this platform.
func OpenWith(name string, o Options) (*Device, error) { return nil, ErrNoDriver }

// Offloads reports "off": there are none on this platform.
func (t *Device) Offloads() string { return "off" }
