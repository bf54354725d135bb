//go:build !linux

package fastpath

import (
	"errors"

	"k8s.io/klog/v2"
)

// TUNPath is the TUN clone device.
const TUNPath = "/dev/net/tun"

// ErrNoTUN: the kernel offers no TUN driver here.
var ErrNoTUN = errors.New("the udp backend's TUN device is supported on Linux only")

// CheckTUN reports ErrNoTUN: TUN devices are supported on Linux only.
func CheckTUN() error { return ErrNoTUN }

// TUN is a Device over a Linux TUN queue; on this platform it cannot be opened.
type TUN struct{}

var _ Device = (*TUN)(nil)

// OpenTUN reports ErrNoTUN on this platform.
func OpenTUN(name string, persist bool, batch int) (*TUN, error) { return nil, ErrNoTUN }

// EnsurePersistentTUN reports ErrNoTUN on this platform.
func EnsurePersistentTUN(name string) error { return ErrNoTUN }

// Name returns the device name.
func (t *TUN) Name() string { return "" }

// BatchSize implements Device.
func (t *TUN) BatchSize() int { return 1 }

// Read implements Device.
func (t *TUN) Read(pkts []Packet) (int, error) { return 0, ErrNoTUN }

// Write implements Device.
func (t *TUN) Write(pkts []Packet) (int, error) { return 0, ErrNoTUN }

// Close implements Device.
func (t *TUN) Close() error { return nil }

// TUNOptions configure OpenTUNWith.
type TUNOptions struct {
	Persist bool
	Batch   int
	Offload bool
	Log     klog.Logger
}

// OpenTUNWith reports ErrNoTUN on this platform.
func OpenTUNWith(name string, o TUNOptions) (*TUN, error) { return nil, ErrNoTUN }

// Offloads reports "off": there are none on this platform.
func (t *TUN) Offloads() string { return "off" }
