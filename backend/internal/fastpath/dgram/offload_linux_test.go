//go:build linux

package dgram

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/nstest"
)

// TestUDPOffload sends runs of equal datagrams with UDP GSO to a GRO socket and to a
// plain one: the GRO socket's Read hands them out one per Packet, and the plain socket
// receives exactly the same datagrams, one inner packet each (the wire format).
func TestUDPOffload(t *testing.T) {
	ns := nstest.Temp(t, "udpoff")
	var a, b, plain *net.UDPConn
	if err := nsutil.Do(ns, func() (err error) {
		lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
		if a, err = net.ListenUDP("udp4", lo); err != nil {
			return err
		}
		if b, err = net.ListenUDP("udp4", lo); err != nil {
			return err
		}
		plain, err = net.ListenUDP("udp4", lo)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	ca, err := NewWith(a, Options{Batch: 16, Offload: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cb, err := NewWith(b, Options{Batch: 16, Offload: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if ca.Offloads() != "gso,gro" || !cb.OwnsReadBuffers() {
		t.Fatalf("offloads %q", ca.Offloads())
	}
	aAP := a.LocalAddr().(*net.UDPAddr).AddrPort()
	bAP := b.LocalAddr().(*net.UDPAddr).AddrPort()
	plainAP := plain.LocalAddr().(*net.UDPAddr).AddrPort()

	// 100 datagrams of 1000 bytes and a short one to b, then 30 to plain, then 5 to b.
	var want [][]byte
	var batch []fastpath.Packet
	add := func(to netip.AddrPort, n int) {
		d := make([]byte, n)
		for i := range d {
			d[i] = byte(len(batch) + i)
		}
		batch = append(batch, fastpath.Packet{Buf: append(make([]byte, fastpath.Headroom), d...), Off: fastpath.Headroom, Len: n, Addr: to})
		want = append(want, d)
	}
	for range 100 {
		add(bAP, 1000)
	}
	add(bAP, 17)
	for range 30 {
		add(plainAP, 1200)
	}
	for range 5 {
		add(bAP, 600)
	}
	if n, err := ca.Write(batch); n != len(batch) || err != nil {
		t.Fatalf("Write = %d of %d, %v", n, len(batch), err)
	}

	// b: 106 datagrams, in order, read 7 slots at a time (runs continue across Reads).
	wantB := append(append([][]byte{}, want[:101]...), want[131:]...)
	slots := make([]fastpath.Packet, 7)
	var gotB [][]byte
	for len(gotB) < len(wantB) {
		for i := range slots {
			slots[i] = fastpath.Packet{Buf: make([]byte, fastpath.Headroom), Off: fastpath.Headroom}
		}
		n, err := cb.Read(slots)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range slots[:n] {
			if p.Addr != aAP {
				t.Fatalf("sender %s, want %s", p.Addr, aAP)
			}
			gotB = append(gotB, append([]byte(nil), p.Bytes()...))
		}
	}
	for i := range wantB {
		mustEqualBytes(t, "datagram", gotB[i], wantB[i])
	}

	// plain: the same 30 datagrams, one per receive.
	plain.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65536)
	for i := 101; i < 131; i++ {
		n, from, err := plain.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if from != aAP {
			t.Fatalf("from %s", from)
		}
		mustEqualBytes(t, "datagram at the plain socket", buf[:n], want[i])
	}

	// No allocation per batch written and read.
	rb := make([]fastpath.Packet, 64)
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := ca.Write(batch[:100]); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < 100; {
			for i := range rb {
				rb[i] = fastpath.Packet{Buf: slots[0].Buf[:fastpath.Headroom], Off: fastpath.Headroom}
			}
			n, err := cb.Read(rb)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per 100 datagrams written and read", allocs)
	}
}

// TestUDPGSORefusedMessage: a GSO message the kernel refuses (EINVAL: SO_NO_CHECK forbids
// GSO) is sent again as single datagrams, which arrive one each.
func TestUDPGSORefusedMessage(t *testing.T) {
	ns := nstest.Temp(t, "udpgso")
	var a, b *net.UDPConn
	if err := nsutil.Do(ns, func() (err error) {
		lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
		if a, err = net.ListenUDP("udp4", lo); err != nil {
			return err
		}
		b, err = net.ListenUDP("udp4", lo)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rc, _ := a.SyscallConn()
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1) })
	c, err := NewWith(a, Options{Batch: 8, Offload: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to := b.LocalAddr().(*net.UDPAddr).AddrPort()
	batch := make([]fastpath.Packet, 20)
	for i := range batch {
		batch[i] = fastpath.Packet{Buf: make([]byte, fastpath.Headroom+500), Off: fastpath.Headroom, Len: 500, Addr: to}
		batch[i].Buf[fastpath.Headroom] = byte(i)
	}
	if n, err := c.Write(batch); n != len(batch) || err != nil {
		t.Fatalf("Write = %d of %d, %v", n, len(batch), err)
	}
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2000)
	for i := range batch {
		n, err := b.Read(buf)
		if err != nil || n != 500 || buf[0] != byte(i) {
			t.Fatalf("datagram %d: %d bytes, first %d, %v", i, n, buf[0], err)
		}
	}
}

func TestGSORefused(t *testing.T) {
	for _, c := range []struct {
		errno          syscall.Errno
		retry, disable bool
	}{
		{unix.EIO, true, true},
		{unix.EINVAL, true, false},
		{unix.EMSGSIZE, false, false},
		{unix.ENETUNREACH, false, false},
	} {
		if r, d := gsoRefused(c.errno); r != c.retry || d != c.disable {
			t.Errorf("%v: retry %v disable %v, want %v %v", c.errno, r, d, c.retry, c.disable)
		}
	}
}

// TestUDPOffloadOffWithBatchOne: Batch 1 stays one datagram per system call, offloads or
// not.
func TestUDPOffloadOffWithBatchOne(t *testing.T) {
	ns := nstest.Temp(t, "udpone")
	var a *net.UDPConn
	if err := nsutil.Do(ns, func() (err error) {
		a, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c, err := NewWith(a, Options{Batch: 1, Offload: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.gso.Load() || c.gro || !strings.HasPrefix(c.Offloads(), "off") {
		t.Fatalf("batch 1 with offloads: %q", c.Offloads())
	}
}

func mustEqualBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\n got %x\nwant %x", what, got, want)
	}
}
