//go:build linux

package fastpath_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/nstest"
)

// inNS runs fn inside the namespace and fails the test on error.
func inNS(t *testing.T, ns string, fn func() error) {
	t.Helper()
	if err := nsutil.Do(ns, fn); err != nil {
		t.Fatal(err)
	}
}

func mustRun(t *testing.T, ns string, argv ...string) string {
	t.Helper()
	out, err := nstest.Run(ns, argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func slots(n, size int) []fastpath.Packet {
	p := make([]fastpath.Packet, n)
	for i := range p {
		p[i] = fastpath.Packet{Buf: make([]byte, fastpath.Headroom+size), Off: fastpath.Headroom}
	}
	return p
}

func TestSocketConn(t *testing.T) {
	ns := nstest.Temp(t, "sock")
	for _, batch := range []int{1, 8} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			var sock, peer *net.UDPConn
			inNS(t, ns, func() (err error) {
				if sock, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
					return err
				}
				peer, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				return err
			})
			defer peer.Close()
			c, err := fastpath.NewSocketConn(sock, batch)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			sockAP := sock.LocalAddr().(*net.UDPAddr).AddrPort()

			const count = 20
			for i := 0; i < count; i++ {
				if _, err := peer.WriteToUDPAddrPort([]byte(fmt.Sprintf("in %d", i)), sockAP); err != nil {
					t.Fatal(err)
				}
			}
			in := slots(16, 2000)
			got := 0
			for got < count {
				n, err := c.Read(in)
				if err != nil {
					t.Fatal(err)
				}
				if n < 1 || n > batch {
					t.Fatalf("Read returned %d packets with batch %d", n, batch)
				}
				for i := range in[:n] {
					if want := fmt.Sprintf("in %d", got); string(in[i].Bytes()) != want || in[i].Addr != peerAP {
						t.Fatalf("read %q from %s, want %q from %s", in[i].Bytes(), in[i].Addr, want, peerAP)
					}
					got++
				}
			}

			out := slots(count, 100)
			for i := range out {
				out[i].Len = copy(out[i].Buf[out[i].Off:], fmt.Sprintf("out %d", i))
				out[i].Addr = peerAP
			}
			if n, err := c.Write(out); n != count || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			buf := make([]byte, 100)
			for i := 0; i < count; i++ {
				peer.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, from, err := peer.ReadFromUDPAddrPort(buf)
				if err != nil || string(buf[:n]) != fmt.Sprintf("out %d", i) || from != sockAP {
					t.Fatalf("peer read %q from %s (%v)", buf[:n], from, err)
				}
			}

			// A refused datagram is skipped; the rest of the batch still goes out.
			bad := slots(3, 100)
			for i := range bad {
				bad[i].Len = copy(bad[i].Buf[bad[i].Off:], fmt.Sprintf("b%d", i))
				bad[i].Addr = peerAP
			}
			bad[1].Addr = netip.MustParseAddrPort("127.0.0.1:0") // port 0: EINVAL
			n, err := c.Write(bad)
			if n != 2 || err == nil {
				t.Fatalf("Write with one bad datagram = %d, %v; want 2 and an error", n, err)
			}
			for _, want := range []string{"b0", "b2"} {
				peer.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, _, err := peer.ReadFromUDPAddrPort(buf)
				if err != nil || string(buf[:n]) != want {
					t.Fatalf("peer read %q (%v), want %q", buf[:n], err, want)
				}
			}

			// No allocation per round trip of a batch.
			one := out[:batch]
			allocs := testing.AllocsPerRun(200, func() {
				if _, err := c.Write(one); err != nil {
					t.Fatal(err)
				}
				for i := range one {
					if _, _, err := peer.ReadFromUDPAddrPort(buf); err != nil {
						t.Fatal(err)
					}
					if _, err := peer.WriteToUDPAddrPort(buf[:4], sockAP); err != nil {
						t.Fatal(err)
					}
					_ = i
				}
				for left := len(one); left > 0; {
					n, err := c.Read(in)
					if err != nil {
						t.Fatal(err)
					}
					left -= n
				}
			})
			// The peer's plain net.UDPConn calls may allocate; SocketConn must not, so allow
			// nothing beyond what the standard library does.
			if allocs > 0 {
				t.Errorf("%v allocations per batch round trip", allocs)
			}

			// Close wakes a blocked Read with net.ErrClosed.
			errc := make(chan error, 1)
			go func() { _, err := c.Read(in); errc <- err }()
			time.Sleep(50 * time.Millisecond)
			c.Close()
			select {
			case err := <-errc:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("Read after Close: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not wake Read")
			}
			if _, err := c.Write(out[:1]); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Write after Close: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

func TestSocketConnRejectsIPv6(t *testing.T) {
	ns := nstest.Temp(t, "sock6")
	var sock *net.UDPConn
	inNS(t, ns, func() (err error) {
		sock, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
		return err
	})
	defer sock.Close()
	if _, err := fastpath.NewSocketConn(sock, 4); err == nil {
		t.Fatal("NewSocketConn accepted an IPv6 socket")
	}
}

// readIPv4 reads from the TUN until an IPv4 packet arrives (the kernel may also send IPv6
// router solicitations into a fresh device).
func readIPv4(t *testing.T, tun *fastpath.TUN, in []fastpath.Packet) []byte {
	t.Helper()
	for i := 0; i < 50; i++ {
		n, err := tun.Read(in)
		if err != nil {
			t.Fatal(err)
		}
		for j := range in[:n] {
			if b := in[j].Bytes(); len(b) > 0 && b[0]>>4 == 4 {
				return append([]byte(nil), b...)
			}
		}
	}
	t.Fatal("no IPv4 packet from the TUN")
	return nil
}

func TestTUN(t *testing.T) {
	if err := fastpath.CheckTUN(); err != nil {
		t.Skip(err)
	}
	ns := nstest.Temp(t, "tun")
	var tun *fastpath.TUN
	inNS(t, ns, func() (err error) { tun, err = fastpath.OpenTUN("wtun0", true, 8); return err })
	defer tun.Close()
	if tun.Name() != "wtun0" || tun.BatchSize() != 8 {
		t.Fatalf("name %q batch %d", tun.Name(), tun.BatchSize())
	}
	mustRun(t, ns, "ip", "addr", "add", "10.9.0.0/32", "dev", "wtun0")
	mustRun(t, ns, "ip", "link", "set", "wtun0", "up")
	mustRun(t, ns, "ip", "route", "add", "10.9.0.0/16", "dev", "wtun0")
	index := mustRun(t, ns, "cat", "/sys/class/net/wtun0/ifindex")

	// A datagram the kernel routes into the TUN comes out of Read as a bare IPv4 packet.
	var sender *net.UDPConn
	inNS(t, ns, func() (err error) { sender, err = net.ListenUDP("udp4", nil); return err })
	defer sender.Close()
	if _, err := sender.WriteToUDPAddrPort([]byte("to the tun"), netip.MustParseAddrPort("10.9.1.5:7")); err != nil {
		t.Fatal(err)
	}
	in := slots(8, 1500)
	pkt := readIPv4(t, tun, in)
	if !bytes.Equal(pkt[12:16], []byte{10, 9, 0, 0}) || !bytes.Equal(pkt[16:20], []byte{10, 9, 1, 5}) || !bytes.HasSuffix(pkt, []byte("to the tun")) {
		t.Fatalf("read % x", pkt)
	}

	// A packet written into the TUN enters the kernel: an echo request to the TUN's own
	// address from 10.9.1.5 is answered back into the TUN.
	echo := packettest.ICMPEcho("10.9.1.5", "10.9.0.0", 77)
	w := slots(1, 1500)
	w[0].Len = copy(w[0].Buf[w[0].Off:], echo)
	if n, err := tun.Write(w); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	reply := readIPv4(t, tun, in)
	if reply[9] != 1 || reply[20] != 0 || !bytes.Equal(reply[16:20], []byte{10, 9, 1, 5}) {
		t.Fatalf("no echo reply: % x", reply)
	}

	// Close wakes a blocked Read; the persistent device, its address and route stay.
	errc := make(chan error, 1)
	go func() { _, err := tun.Read(in); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	tun.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Read")
	}
	if out := mustRun(t, ns, "ip", "route", "show", "10.9.0.0/16"); !strings.Contains(out, "wtun0") {
		t.Fatalf("route gone after Close: %q", out)
	}
	// Adopting it again gives the same device.
	inNS(t, ns, func() error { return fastpath.EnsurePersistentTUN("wtun0") })
	inNS(t, ns, func() (err error) { tun, err = fastpath.OpenTUN("wtun0", true, 1); return err })
	defer tun.Close()
	if again := mustRun(t, ns, "cat", "/sys/class/net/wtun0/ifindex"); again != index {
		t.Fatalf("ifindex %s after adopting, was %s", again, index)
	}
	if out := mustRun(t, ns, "ip", "-4", "addr", "show", "wtun0"); !strings.Contains(out, "10.9.0.0/32") {
		t.Fatalf("address gone: %q", out)
	}

	// A second queue on a single-queue TUN is refused with a clear message.
	inNS(t, ns, func() error {
		_, err := fastpath.OpenTUN("wtun0", true, 1)
		if err == nil || !strings.Contains(err.Error(), "in use") {
			return fmt.Errorf("second OpenTUN: %v, want an in-use error", err)
		}
		return nil
	})
	// A non-TUN device of the name is refused with a clear message.
	mustRun(t, ns, "ip", "link", "add", "wdummy0", "type", "bridge")
	inNS(t, ns, func() error {
		err := fastpath.EnsurePersistentTUN("wdummy0")
		if err == nil || !strings.Contains(err.Error(), "another type") {
			return fmt.Errorf("OpenTUN on a dummy: %v, want a clear error", err)
		}
		return nil
	})

	// No allocation per written and read packet.
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := tun.Write(w); err != nil {
			t.Fatal(err)
		}
		if _, err := tun.Read(in[:1]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per TUN write+read", allocs)
	}
}

func TestCheckTUNSaysWhatIsMissing(t *testing.T) {
	err := fastpath.CheckTUNAt(t.TempDir() + "/tun")
	if !errors.Is(err, fastpath.ErrNoTUN) || !strings.Contains(err.Error(), "modprobe tun") || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("CheckTUN on a missing path: %v", err)
	}
	if err := fastpath.CheckTUNAt(t.TempDir()); !errors.Is(err, fastpath.ErrNoTUN) {
		t.Fatalf("CheckTUN on a directory: %v", err)
	}
}

// BenchmarkSocketConnWrite measures sending 1400-byte datagrams through a SocketConn,
// one per system call (batch=1, the udp backend's Batch=false) against batches (sendmmsg).
func BenchmarkSocketConnWrite(b *testing.B) {
	ns := nstest.Temp(b, "bench")
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			var sock, sink *net.UDPConn
			if err := nsutil.Do(ns, func() (err error) {
				if sock, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
					return err
				}
				sink, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				return err
			}); err != nil {
				b.Fatal(err)
			}
			defer sink.Close()
			c, err := fastpath.NewSocketConn(sock, batch)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			out := slots(batch, 1400)
			for i := range out {
				out[i].Len = 1400
				out[i].Addr = sink.LocalAddr().(*net.UDPAddr).AddrPort()
			}
			b.SetBytes(int64(1400 * batch))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "packets/s")
		})
	}
}
