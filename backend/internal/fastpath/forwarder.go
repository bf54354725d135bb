package fastpath

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/pkg/ip"
)

// DefaultBatchSize is the number of packets per Read and Write when Config.BatchSize is 0.
const DefaultBatchSize = 64

// OffloadBatchSize is the batch to use with offloads: room for two TCP superpackets of 64
// KiB cut at an MTU of 1500 or more, so that each stays whole within one batch.
const OffloadBatchSize = 128

// maxReadErrors is how many Read failures in a row (other than net.ErrClosed) end a loop
// with an error, so a device that broke for good does not spin.
const maxReadErrors = 64

// Waits between failed Config.Reopen calls: from reopenMinDelay, doubling up to
// reopenMaxDelay.
const (
	reopenMinDelay = 20 * time.Millisecond
	reopenMaxDelay = time.Second
)

// Config configures a Forwarder.
type Config struct {
	// Subnet is the own subnet. Packets from peers must be addressed inside it; packets
	// from the device addressed inside it are not tunnelled.
	Subnet netip.Prefix
	// Self is the source address of ICMP errors. The zero value means Subnet's network
	// address, which flannel assigns to the TUN as a /32.
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
	Reopen func() (Device, error)
}

// Forwarder moves packets between a Device and a Conn (see the package documentation).
// SetPeers, Stats and Close are safe to call from any goroutine at any time.
type Forwarder struct {
	conn   Conn
	log    klog.Logger
	batch  int
	mtu    int
	reopen func() (Device, error) // Config.Reopen; may be nil

	// Immutable copies of the configuration, as big-endian integers.
	subnetAddr, subnetMask uint32
	self                   uint32

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
type deviceRef struct{ Device }

// New checks cfg and returns a Forwarder over dev and conn, with no peers yet. The
// Forwarder owns dev and conn from now on: Close (or the end of Run) closes them.
func New(cfg Config, dev Device, conn Conn) (*Forwarder, error) {
	if dev == nil || conn == nil {
		return nil, errors.New("fastpath: a Device and a Conn are required")
	}
	if !cfg.Subnet.Addr().Is4() || !ip.IsNetworkAddress(cfg.Subnet) {
		return nil, fmt.Errorf("fastpath: subnet %s is not an IPv4 network address", cfg.Subnet)
	}
	if cfg.MTU < 68 || cfg.MTU > MaxPacket {
		return nil, fmt.Errorf("fastpath: MTU %d out of range [68, %d]", cfg.MTU, MaxPacket)
	}
	if cfg.BatchSize < 0 {
		return nil, fmt.Errorf("fastpath: negative batch size %d", cfg.BatchSize)
	}
	self := cfg.Self
	if !self.IsValid() {
		self = cfg.Subnet.Addr()
	}
	if !self.Is4() {
		return nil, fmt.Errorf("fastpath: ICMP source %s is not IPv4", self)
	}
	batch := cfg.BatchSize
	if batch == 0 {
		batch = DefaultBatchSize
	}
	batch = max(1, min(batch, dev.BatchSize(), conn.BatchSize()))
	mask := ^uint32(0)
	if cfg.Subnet.Bits() < 32 {
		mask = ^(^uint32(0) >> cfg.Subnet.Bits())
	}
	f := &Forwarder{
		conn:       conn,
		log:        cfg.Log,
		batch:      batch,
		mtu:        cfg.MTU,
		reopen:     cfg.Reopen,
		subnetAddr: ip.ToUint32(cfg.Subnet.Addr()),
		subnetMask: mask,
		self:       ip.ToUint32(self),
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
func (f *Forwarder) Stats() Stats { return f.stats.snapshot() }

// BatchSize returns the effective number of packets per Read and Write.
func (f *Forwarder) BatchSize() int { return f.batch }

var _ StatsReporter = (*Forwarder)(nil)

// offloader is implemented by a Device or Conn that may use kernel offloads (*TUN,
// *dgram.Conn).
type offloader interface{ Offloads() string }

// Offloads describes the offloads the Device and the Conn use, for logs and status:
// e.g. "tun=tso4,csum,gro socket=gso,gro", or "none" when neither side has any.
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

// replaceDevice swaps a new Device from Reopen in for old, which is gone (cause), and
// returns it. It fails with cause when there is no Reopen, and with an error wrapping
// net.ErrClosed when the Forwarder is closed first.
func (f *Forwarder) replaceDevice(old *deviceRef, cause error) (*deviceRef, error) {
	if f.reopen == nil {
		return nil, cause
	}
	start := time.Now()
	delay := reopenMinDelay
	for attempt := 1; ; attempt++ {
		dev, err := f.reopen()
		if err == nil {
			f.devMu.Lock()
			if f.closed {
				f.devMu.Unlock()
				dev.Close()
				return nil, fmt.Errorf("replace gone device: %w", net.ErrClosed)
			}
			ref := &deviceRef{dev}
			f.dev.Store(ref)
			f.devMu.Unlock()
			// Closed after the swap: a Write of the connection loop still on old fails
			// with net.ErrClosed, which it takes for a drop since old is no longer current.
			old.Close()
			f.log.Info("Device deleted by someone else; re-created it and resumed forwarding",
				"cause", cause.Error(), "after", time.Since(start), "attempts", attempt, "offloads", f.Offloads())
			return ref, nil
		}
		if attempt == 1 {
			f.log.Error(err, "Device deleted by someone else; cannot re-create it, retrying", "cause", cause.Error())
		}
		t := time.NewTimer(delay)
		select {
		case <-f.done:
			t.Stop()
			return nil, fmt.Errorf("replace gone device: %w", net.ErrClosed)
		case <-t.C:
		}
		delay = min(2*delay, reopenMaxDelay)
	}
}

// slots is a loop's batch of packet slots over one allocation, each with Headroom and
// size bytes for the packet.
type slots struct {
	pkts []Packet
	bufs [][]byte // each slot's own buffer, as a Read may point Buf elsewhere
}

func makeSlots(n, size int) slots {
	slot := Headroom + size
	mem := make([]byte, n*slot)
	s := slots{pkts: make([]Packet, n), bufs: make([][]byte, n)}
	for i := range s.pkts {
		s.bufs[i] = mem[i*slot : (i+1)*slot : (i+1)*slot]
		s.pkts[i] = Packet{Buf: s.bufs[i], Off: Headroom}
	}
	return s
}

// makePackets returns n slots over one allocation, each with Headroom and size bytes for
// the packet.
func makePackets(n, size int) []Packet { return makeSlots(n, size).pkts }

// reset gives every slot its own buffer and full headroom back before a Read.
func (s *slots) reset() {
	for i := range s.pkts {
		s.pkts[i] = Packet{Buf: s.bufs[i], Off: Headroom}
	}
}

// readBuffers is implemented by a Conn whose Read may hand out packets in buffers of its
// own (*dgram.Conn with UDP GRO): when OwnsReadBuffers says so, the loop's slots need no
// room for data.
type readBuffers interface{ OwnsReadBuffers() bool }

// readFailed counts a failed Read and reports whether the loop must end, with the error
// to end it with.
func (f *Forwarder) readFailed(side string, err error, inARow *int) error {
	if errors.Is(err, net.ErrClosed) {
		return err
	}
	f.stats.readErrors.Add(1)
	*inARow++
	if *inARow >= maxReadErrors {
		return fmt.Errorf("%s read failed %d times in a row: %w", side, *inARow, err)
	}
	return nil
}

// deviceLoop reads from the device and sends to peers until the device or the conn is
// closed or the device keeps failing.
func (f *Forwarder) deviceLoop() error {
	slots := makeSlots(f.batch, f.mtu)
	in := slots.pkts
	icmp := makePackets(f.batch, icmpMaxLen)
	out := make([]Packet, 0, f.batch)
	var c batchCounts
	failures := 0
	dev := f.dev.Load()
	for {
		slots.reset()
		n, err := dev.Read(in)
		if err != nil {
			if errors.Is(err, ErrDeviceGone) {
				if dev, err = f.replaceDevice(dev, err); err != nil {
					return err
				}
				failures = 0
				continue
			}
			if err := f.readFailed("device", err, &failures); err != nil {
				return err
			}
			continue
		}
		failures = 0
		t := f.peers.Load()
		out = out[:0]
		ni := 0
		for i := range in[:n] {
			p := &in[i]
			c.deviceIn++
			c.deviceInBytes += uint64(p.Len)
			r, l := f.fromDevice(t, p, icmp[ni].Buf[Headroom:])
			if r == DropNone {
				out = append(out, *p)
				continue
			}
			c.drop(r)
			if l > 0 {
				icmp[ni].Len = l
				ni++
			}
		}
		if err := f.send(out, &c); err != nil {
			f.stats.flush(&c)
			return err
		}
		if err := f.toDevice(icmp[:ni], &c); err != nil {
			f.stats.flush(&c)
			return err
		}
		c.icmp += uint64(ni)
		f.stats.flush(&c)
	}
}

// connLoop reads from the underlay and writes to the device until either is closed or
// the conn keeps failing.
func (f *Forwarder) connLoop() error {
	size := MaxPacket
	if rb, ok := f.conn.(readBuffers); ok && rb.OwnsReadBuffers() {
		size = 0
	}
	slots := makeSlots(f.batch, size)
	in := slots.pkts
	icmp := makePackets(f.batch, icmpMaxLen)
	out := make([]Packet, 0, f.batch)
	var c batchCounts
	failures := 0
	for {
		slots.reset()
		n, err := f.conn.Read(in)
		if err != nil {
			if err := f.readFailed("underlay", err, &failures); err != nil {
				return err
			}
			continue
		}
		failures = 0
		t := f.peers.Load()
		out = out[:0]
		ni := 0
		for i := range in[:n] {
			p := &in[i]
			c.connIn++
			c.connInBytes += uint64(p.Len)
			r, l := f.fromConn(t, p, icmp[ni].Buf[Headroom:])
			if r == DropNone {
				out = append(out, *p)
				continue
			}
			c.drop(r)
			if l > 0 {
				icmp[ni].Len = l
				icmp[ni].Addr = p.Addr
				ni++
			}
		}
		if err := f.toDevice(out, &c); err != nil {
			f.stats.flush(&c)
			return err
		}
		if err := f.send(icmp[:ni], &c); err != nil {
			f.stats.flush(&c)
			return err
		}
		c.icmp += uint64(ni)
		f.stats.flush(&c)
	}
}

// send writes pkts to the conn and counts them. Only net.ErrClosed is returned; other
// errors are per-packet drops.
func (f *Forwarder) send(pkts []Packet, c *batchCounts) error {
	if len(pkts) == 0 {
		return nil
	}
	n, err := f.conn.Write(pkts)
	c.connOut += uint64(n)
	c.connOutBytes += sumLen(pkts, n)
	if n < len(pkts) {
		c.drops[DropSendError] += uint64(len(pkts) - n)
	}
	if errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// toDevice writes pkts to the current device and counts them, like send. A device that
// was closed because the device loop replaced it counts as a drop, not as the end.
func (f *Forwarder) toDevice(pkts []Packet, c *batchCounts) error {
	if len(pkts) == 0 {
		return nil
	}
	dev := f.dev.Load()
	n, err := dev.Write(pkts)
	c.deviceOut += uint64(n)
	c.deviceOutBytes += sumLen(pkts, n)
	if n < len(pkts) {
		c.drops[DropDeviceWriteError] += uint64(len(pkts) - n)
	}
	if errors.Is(err, net.ErrClosed) && dev == f.dev.Load() {
		return err
	}
	return nil
}

// sumLen returns the bytes of the first n packets. When a write skipped a packet in the
// middle of a batch, the byte count is approximate; packet counts are exact.
func sumLen(pkts []Packet, n int) uint64 {
	var s uint64
	for i := range pkts[:n] {
		s += uint64(pkts[i].Len)
	}
	return s
}
