package fastpath

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"

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
	// Log receives one line when forwarding starts and when it stops; nothing per packet.
	Log klog.Logger
}

// Forwarder moves packets between a Device and a Conn (see the package documentation).
// SetPeers, Stats and Close are safe to call from any goroutine at any time.
type Forwarder struct {
	dev   Device
	conn  Conn
	log   klog.Logger
	batch int
	mtu   int

	// Immutable copies of the configuration, as big-endian integers.
	subnetAddr, subnetMask uint32
	self                   uint32

	peers   atomic.Pointer[PeerTable] // swapped whole by SetPeers, read by both loops
	stats   counters
	running atomic.Bool // set by the first Run
}

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
	return &Forwarder{
		dev:        dev,
		conn:       conn,
		log:        cfg.Log,
		batch:      batch,
		mtu:        cfg.MTU,
		subnetAddr: ip.ToUint32(cfg.Subnet.Addr()),
		subnetMask: mask,
		self:       ip.ToUint32(self),
	}, nil
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
// *SocketConn).
type offloader interface{ Offloads() string }

// Offloads describes the offloads the Device and the Conn use, for logs and status:
// e.g. "tun=tso4,csum,gro socket=gso,gro", or "none" when neither side has any.
func (f *Forwarder) Offloads() string {
	var parts []string
	if o, ok := f.dev.(offloader); ok {
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
	return errors.Join(f.dev.Close(), f.conn.Close())
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

// readBuffers is implemented by a Conn whose Read hands out packets in buffers of its own
// (UDP GRO), so the loop's slots need no room for data.
type readBuffers interface{ ownsReadBuffers() bool }

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
	for {
		slots.reset()
		n, err := f.dev.Read(in)
		if err != nil {
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
	if rb, ok := f.conn.(readBuffers); ok && rb.ownsReadBuffers() {
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

// toDevice writes pkts to the device and counts them, like send.
func (f *Forwarder) toDevice(pkts []Packet, c *batchCounts) error {
	if len(pkts) == 0 {
		return nil
	}
	n, err := f.dev.Write(pkts)
	c.deviceOut += uint64(n)
	c.deviceOutBytes += sumLen(pkts, n)
	if n < len(pkts) {
		c.drops[DropDeviceWriteError] += uint64(len(pkts) - n)
	}
	if errors.Is(err, net.ErrClosed) {
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
