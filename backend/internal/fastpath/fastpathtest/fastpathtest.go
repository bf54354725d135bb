// Package fastpathtest provides in-memory fakes of fastpath.Device and fastpath.Conn, so
// that the whole forwarding path runs in a test without root, TUN or sockets. It is
// imported only by tests and never compiled into a binary.
//
// A Device is a TUN seen from the kernel's side: the test Injects packets (as if the
// kernel routed them into the TUN) and receives what the Forwarder writes from Written. A
// Hub is a lossless underlay: each Conn has an endpoint, and a datagram written to an
// endpoint arrives at the Conn that holds it, with the sender's endpoint as source.
package fastpathtest

import (
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

// Device is an in-memory fastpath.Device.
type Device struct {
	batch     int
	in        chan []byte
	out       chan []byte
	done      chan struct{}
	closeOnce sync.Once
	gone      chan struct{}
	goneOnce  sync.Once
}

var _ fastpath.Device = (*Device)(nil)

// NewDevice returns a Device whose Read returns up to batch packets per call, with room
// for depth queued packets in each direction.
func NewDevice(batch, depth int) *Device {
	return &Device{
		batch: max(1, batch),
		in:    make(chan []byte, depth),
		out:   make(chan []byte, depth),
		done:  make(chan struct{}),
		gone:  make(chan struct{}),
	}
}

// Delete makes the Device behave like a TUN deleted under its reader: Read and Write
// fail with an error wrapping fastpath.ErrDeviceGone from now on (until Close, after
// which they fail with net.ErrClosed). Idempotent.
func (d *Device) Delete() { d.goneOnce.Do(func() { close(d.gone) }) }

// goneErr returns the Read or Write error of a deleted Device that is not closed.
func (d *Device) goneErr(op string) error {
	select {
	case <-d.done:
		return fmt.Errorf("fake device %s: %w", op, net.ErrClosed)
	default:
		return fmt.Errorf("fake device %s: %w", op, fastpath.ErrDeviceGone)
	}
}

// Inject queues a packet for the Forwarder to read. It copies pkt. It blocks while the
// queue is full and returns false once the Device is closed.
func (d *Device) Inject(pkt []byte) bool {
	select {
	case d.in <- append([]byte(nil), pkt...):
		return true
	case <-d.done:
		return false
	}
}

// Written delivers the packets the Forwarder wrote, one per receive, in order.
func (d *Device) Written() <-chan []byte { return d.out }

// BatchSize implements fastpath.Device.
func (d *Device) BatchSize() int { return d.batch }

// Read implements fastpath.Device.
func (d *Device) Read(pkts []fastpath.Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	var first []byte
	select {
	case <-d.gone:
		return 0, d.goneErr("read")
	default:
	}
	select {
	case first = <-d.in:
	case <-d.done:
		return 0, fmt.Errorf("fake device read: %w", net.ErrClosed)
	case <-d.gone:
		return 0, d.goneErr("read")
	}
	pkts[0].Len = copy(pkts[0].Buf[pkts[0].Off:], first)
	n := 1
	for n < min(len(pkts), d.batch) {
		select {
		case b := <-d.in:
			pkts[n].Len = copy(pkts[n].Buf[pkts[n].Off:], b)
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

// Write implements fastpath.Device. It blocks while Written is full.
func (d *Device) Write(pkts []fastpath.Packet) (int, error) {
	for i := range pkts {
		select {
		case <-d.done:
			return i, fmt.Errorf("fake device write: %w", net.ErrClosed)
		case <-d.gone:
			return i, d.goneErr("write")
		default:
		}
		select {
		case d.out <- append([]byte(nil), pkts[i].Bytes()...):
		case <-d.done:
			return i, fmt.Errorf("fake device write: %w", net.ErrClosed)
		}
	}
	return len(pkts), nil
}

// Close implements fastpath.Device.
func (d *Device) Close() error {
	d.closeOnce.Do(func() { close(d.done) })
	return nil
}

// Hub connects Conns by endpoint.
type Hub struct {
	mu    sync.Mutex // guards conns
	conns map[netip.AddrPort]*Conn
}

// NewHub returns an empty underlay.
func NewHub() *Hub { return &Hub{conns: make(map[netip.AddrPort]*Conn)} }

// Conn returns a new Conn at endpoint local, with room for depth queued datagrams and up
// to batch datagrams per Read. It panics if local is taken: that is a bug in the test.
func (h *Hub) Conn(local netip.AddrPort, batch, depth int) *Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.conns[local]; ok {
		panic(fmt.Sprintf("fastpathtest: endpoint %s already has a Conn", local))
	}
	c := &Conn{hub: h, local: local, batch: max(1, batch), in: make(chan datagram, depth), done: make(chan struct{})}
	h.conns[local] = c
	return c
}

// Send delivers payload to the Conn at to as if from sent from from, which need not
// have a Conn: the test's way to forge datagrams. It reports whether a Conn received it.
func (h *Hub) Send(from, to netip.AddrPort, payload []byte) bool {
	h.mu.Lock()
	c := h.conns[to]
	h.mu.Unlock()
	if c == nil {
		return false
	}
	select {
	case c.in <- datagram{from: from, data: append([]byte(nil), payload...)}:
		return true
	case <-c.done:
		return false
	}
}

type datagram struct {
	from netip.AddrPort
	data []byte
}

// Conn is an in-memory fastpath.Conn on a Hub.
type Conn struct {
	hub       *Hub
	local     netip.AddrPort
	batch     int
	in        chan datagram
	done      chan struct{}
	closeOnce sync.Once
}

var _ fastpath.Conn = (*Conn)(nil)

// LocalAddr returns the Conn's endpoint.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// BatchSize implements fastpath.Conn.
func (c *Conn) BatchSize() int { return c.batch }

// Read implements fastpath.Conn.
func (c *Conn) Read(pkts []fastpath.Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	var d datagram
	select {
	case d = <-c.in:
	case <-c.done:
		return 0, fmt.Errorf("fake conn read: %w", net.ErrClosed)
	}
	fill(&pkts[0], d)
	n := 1
	for n < min(len(pkts), c.batch) {
		select {
		case d = <-c.in:
			fill(&pkts[n], d)
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

func fill(p *fastpath.Packet, d datagram) {
	p.Len = copy(p.Buf[p.Off:], d.data)
	p.Addr = d.from
}

// Write implements fastpath.Conn: each datagram goes to the Conn at its Addr; one to an
// endpoint without a Conn is lost silently, as UDP would lose it.
func (c *Conn) Write(pkts []fastpath.Packet) (int, error) {
	for i := range pkts {
		select {
		case <-c.done:
			return i, fmt.Errorf("fake conn write: %w", net.ErrClosed)
		default:
		}
		c.hub.Send(c.local, pkts[i].Addr, pkts[i].Bytes())
	}
	return len(pkts), nil
}

// Close implements fastpath.Conn and frees the endpoint.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.hub.mu.Lock()
		delete(c.hub.conns, c.local)
		c.hub.mu.Unlock()
	})
	return nil
}
