package forward

import (
	"errors"
	"fmt"
	"net"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packet"
)

// slots is a loop's batch of packet slots over one allocation, each with Headroom and
// size bytes for the packet.
type slots struct {
	pkts []fastpath.Packet
	bufs [][]byte // each slot's own buffer, as a Read may point Buf elsewhere
}

func makeSlots(n, size int) slots {
	slot := fastpath.Headroom + size
	mem := make([]byte, n*slot)
	s := slots{pkts: make([]fastpath.Packet, n), bufs: make([][]byte, n)}
	for i := range s.pkts {
		s.bufs[i] = mem[i*slot : (i+1)*slot : (i+1)*slot]
		s.pkts[i] = fastpath.Packet{Buf: s.bufs[i], Off: fastpath.Headroom}
	}
	return s
}

// makePackets returns n slots over one allocation, each with Headroom and size bytes for
// the packet.
func makePackets(n, size int) []fastpath.Packet { return makeSlots(n, size).pkts }

// reset gives every slot its own buffer and full headroom back before a Read.
func (s *slots) reset() {
	for i := range s.pkts {
		s.pkts[i] = fastpath.Packet{Buf: s.bufs[i], Off: fastpath.Headroom}
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
	icmp := makePackets(f.batch, packet.ICMPMaxLen)
	out := make([]fastpath.Packet, 0, f.batch)
	var c batchCounts
	failures := 0
	dev := f.dev.Load()
	for {
		slots.reset()
		n, err := dev.Read(in)
		if err != nil {
			if errors.Is(err, fastpath.ErrDeviceGone) {
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
			r, l := f.fromDevice(t, p, icmp[ni].Buf[fastpath.Headroom:])
			if r == fastpath.DropNone {
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
	size := fastpath.MaxPacket
	if rb, ok := f.conn.(readBuffers); ok && rb.OwnsReadBuffers() {
		size = 0
	}
	slots := makeSlots(f.batch, size)
	in := slots.pkts
	icmp := makePackets(f.batch, packet.ICMPMaxLen)
	out := make([]fastpath.Packet, 0, f.batch)
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
			r, l := f.fromConn(t, p, icmp[ni].Buf[fastpath.Headroom:])
			if r == fastpath.DropNone {
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
func (f *Forwarder) send(pkts []fastpath.Packet, c *batchCounts) error {
	if len(pkts) == 0 {
		return nil
	}
	n, err := f.conn.Write(pkts)
	c.connOut += uint64(n)
	c.connOutBytes += sumLen(pkts, n)
	if n < len(pkts) {
		c.drops[fastpath.DropSendError] += uint64(len(pkts) - n)
	}
	if errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// toDevice writes pkts to the current device and counts them, like send. A device that
// was closed because the device loop replaced it counts as a drop, not as the end.
func (f *Forwarder) toDevice(pkts []fastpath.Packet, c *batchCounts) error {
	if len(pkts) == 0 {
		return nil
	}
	dev := f.dev.Load()
	n, err := dev.Write(pkts)
	c.deviceOut += uint64(n)
	c.deviceOutBytes += sumLen(pkts, n)
	if n < len(pkts) {
		c.drops[fastpath.DropDeviceWriteError] += uint64(len(pkts) - n)
	}
	if errors.Is(err, net.ErrClosed) && dev == f.dev.Load() {
		return err
	}
	return nil
}

// sumLen returns the bytes of the first n packets. When a write skipped a packet in the
// middle of a batch, the byte count is approximate; packet counts are exact.
func sumLen(pkts []fastpath.Packet, n int) uint64 {
	var s uint64
	for i := range pkts[:n] {
		s += uint64(pkts[i].Len)
	}
	return s
}
