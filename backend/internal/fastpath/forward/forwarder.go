package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/pkg/ip"
)

// DefaultBatchSize is the number of packets per Read and Write when Config.BatchSize is 0.
const DefaultBatchSize = 64

// maxReadErrors is how many Read failures in a row (other than net.ErrClosed) end a loop
// with an error, so a device that broke for good does not spin.
const maxReadErrors = 64

// Config configures a Forwarder.
type Config struct {
	// Subnet is the own IPv4 subnet. Packets from peers must be addressed inside it;
	// packets from the device addressed inside it are not tunnelled. The zero Prefix
	// (allowed only with Subnet6: an IPv6-only node) carries no IPv4: IPv4 packets from
	// the device are dropped as no-route (no ICMP error) and from peers as
	// spoofed-inner-source, since no peer holds an IPv4 subnet.
	Subnet netip.Prefix
	// Subnet6 is the own IPv6 subnet, or the zero Prefix when the node carries no IPv6.
	// With it, IPv6 packets are forwarded as IPv4 ones are (to peers' IPv6 subnets, from
	// peers into Subnet6), with their hop limit decremented; without it, IPv6 packets are
	// dropped as not-ipv4. No ICMPv6 errors are generated: IPv6 packets for no peer and
	// with an expiring hop limit are dropped and counted only.
	Subnet6 netip.Prefix
	// Self is the source address of ICMP errors. The zero value means Subnet's network
	// address, which flannel assigns to the TUN as a /32. Unused without Subnet.
	Self netip.Addr
	// MTU is the device MTU; device-side buffers hold packets of up to MTU bytes.
	MTU int
	// BatchSize is the number of packets per Read and Write; 1 gives one packet per system
	// call. 0 means DefaultBatchSize. The Device's and Conn's BatchSize lower it further.
	BatchSize int
	// Log receives one line when forwarding starts and when it stops, and when the device
	// is replaced; nothing per packet.
	Log klog.Logger
	// Reopen, if set, replaces a Device that is gone (its Read fails with ErrDeviceGone):
	// the device loop calls it, never concurrently, until it returns a new Device, waiting
	// from 20 ms to 1 s between failures and giving up once the Forwarder is closed. The
	// new Device takes the old one's place in both loops and the old one is closed; the
	// Forwarder owns the new one as it owned the first. Reopen runs while nothing is read
	// from the device, so it should re-create the device and return promptly. Without
	// Reopen, a gone Device ends Run with an error wrapping ErrDeviceGone.
	Reopen func() (fastpath.Device, error)
}

// Forwarder moves packets between a Device and a Conn (see the package documentation).
// SetPeers, Stats and Close are safe to call from any goroutine at any time.
type Forwarder struct {
	conn   fastpath.Conn
	log    klog.Logger
	batch  int
	mtu    int
	reopen func() (fastpath.Device, error) // Config.Reopen; may be nil

	// Immutable copies of the configuration, as big-endian integers.
	has4                   bool // Config.Subnet is set: the node carries IPv4
	subnetAddr, subnetMask uint32
	self                   uint32
	subnet6                subnet6 // the own IPv6 subnet; has6 false without one

	peers   atomic.Pointer[PeerTable] // swapped whole by SetPeers, read by both loops
	stats   counters
	running atomic.Bool // set by the first Run

	// dev is the current Device: loaded once per batch by the loops; stored only by the
	// device loop, under devMu, when it replaces a gone device.
	dev    atomic.Pointer[deviceRef]
	devMu  sync.Mutex    // orders a device swap against Close; guards closed
	closed bool          // set by Close
	done   chan struct{} // closed by Close, ends a wait between Reopen attempts
}

// deviceRef boxes a Device so that it can be swapped atomically and compared by
// identity.
type deviceRef struct{ fastpath.Device }

// New checks cfg and returns a Forwarder over dev and conn, with no peers yet. The
// Forwarder owns dev and conn from now on: Close (or the end of Run) closes them.
func New(cfg Config, dev fastpath.Device, conn fastpath.Conn) (*Forwarder, error) {
	if dev == nil || conn == nil {
		return nil, errors.New("fastpath: a Device and a Conn are required")
	}
	has4 := cfg.Subnet.IsValid() || !cfg.Subnet6.IsValid()
	if has4 && (!cfg.Subnet.Addr().Is4() || !ip.IsNetworkAddress(cfg.Subnet)) {
		return nil, fmt.Errorf("fastpath: subnet %s is not an IPv4 network address", cfg.Subnet)
	}
	if cfg.MTU < 68 || cfg.MTU > fastpath.MaxPacket {
		return nil, fmt.Errorf("fastpath: MTU %d out of range [68, %d]", cfg.MTU, fastpath.MaxPacket)
	}
	if cfg.BatchSize < 0 {
		return nil, fmt.Errorf("fastpath: negative batch size %d", cfg.BatchSize)
	}
	s6, err := newSubnet6(cfg.Subnet6)
	if err != nil {
		return nil, err
	}
	self := cfg.Self
	if !self.IsValid() && has4 {
		self = cfg.Subnet.Addr()
	}
	if has4 && !self.Is4() {
		return nil, fmt.Errorf("fastpath: ICMP source %s is not IPv4", self)
	}
	batch := cfg.BatchSize
	if batch == 0 {
		batch = DefaultBatchSize
	}
	batch = max(1, min(batch, dev.BatchSize(), conn.BatchSize()))
	mask := ^uint32(0)
	if has4 && cfg.Subnet.Bits() < 32 {
		mask = ^(^uint32(0) >> cfg.Subnet.Bits())
	}
	var subnetAddr, selfAddr uint32
	if has4 {
		subnetAddr, selfAddr = ip.ToUint32(cfg.Subnet.Addr()), ip.ToUint32(self)
	}
	f := &Forwarder{
		conn:       conn,
		log:        cfg.Log,
		batch:      batch,
		mtu:        cfg.MTU,
		reopen:     cfg.Reopen,
		has4:       has4,
		subnetAddr: subnetAddr,
		subnetMask: mask,
		self:       selfAddr,
		subnet6:    s6,
		done:       make(chan struct{}),
	}
	f.dev.Store(&deviceRef{dev})
	return f, nil
}

// SetPeers replaces the peer table. The loops see it from their next batch on. A nil
// table means no peers.
func (f *Forwarder) SetPeers(t *PeerTable) { f.peers.Store(t) }

// Peers returns the current peer table.
func (f *Forwarder) Peers() *PeerTable { return f.peers.Load() }

// Stats returns a snapshot of the counters.
func (f *Forwarder) Stats() fastpath.Stats { return f.stats.snapshot() }

// BatchSize returns the effective number of packets per Read and Write.
func (f *Forwarder) BatchSize() int { return f.batch }

var _ fastpath.StatsReporter = (*Forwarder)(nil)

// offloader is implemented by a Device or Conn that may use kernel offloads
// (*tun.Device, *dgram.Conn).
type offloader interface{ Offloads() string }

// Offloads describes the offloads the Device and the Conn use, for logs and status:
// e.g. "tun=tso4,tso6,csum,gro socket=gso,gro", or "none" when neither side has any.
func (f *Forwarder) Offloads() string {
	var parts []string
	if o, ok := f.dev.Load().Device.(offloader); ok {
		parts = append(parts, "tun="+o.Offloads())
	}
	if o, ok := f.conn.(offloader); ok {
		parts = append(parts, "socket="+o.Offloads())
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// Run forwards until ctx ends or Close is called, then closes the Device and the Conn,
// waits for both loops and returns nil. It returns an error when a loop fails for good
// (a Device or Conn whose Read keeps failing), after stopping the other loop. Run may be
// called once.
func (f *Forwarder) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("fastpath: Run called twice")
	}
	f.log.Info("Userspace forwarding started", "batch", f.batch, "mtu", f.mtu, "offloads", f.Offloads())
	errc := make(chan error, 2)
	go func() { errc <- f.deviceLoop() }()
	go func() { errc <- f.connLoop() }()

	var errs []error
	pending := 2
	select {
	case <-ctx.Done():
	case err := <-errc:
		pending--
		errs = append(errs, err)
	}
	closeErr := f.Close()
	for ; pending > 0; pending-- {
		errs = append(errs, <-errc)
	}
	var fatal error
	for _, err := range errs {
		if err != nil && !errors.Is(err, net.ErrClosed) {
			fatal = errors.Join(fatal, err)
		}
	}
	if fatal != nil {
		f.log.Error(fatal, "Userspace forwarding failed")
		return fmt.Errorf("userspace forwarding: %w", errors.Join(fatal, closeErr))
	}
	f.log.Info("Userspace forwarding stopped")
	return nil
}

// Close closes the Device and the Conn, which ends Run's loops. It is idempotent.
func (f *Forwarder) Close() error {
	f.devMu.Lock()
	if !f.closed {
		f.closed = true
		close(f.done)
	}
	dev := f.dev.Load().Device
	f.devMu.Unlock()
	return errors.Join(dev.Close(), f.conn.Close())
}
