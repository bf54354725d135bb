//go:build linux

package dgram_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/dgram"
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

func slots(n, size int) []fastpath.Packet {
	p := make([]fastpath.Packet, n)
	for i := range p {
		p[i] = fastpath.Packet{Buf: make([]byte, fastpath.Headroom+size), Off: fastpath.Headroom}
	}
	return p
}

func TestConn(t *testing.T) {
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
			c, err := dgram.New(sock, batch)
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
			// The peer's plain net.UDPConn calls may allocate; Conn must not, so allow
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

// TestConnIPv6 moves datagrams both ways over an IPv6 socket (the sockaddrs are
// sockaddr_in6), one per system call and in batches; UDP offloads stay off.
func TestConnIPv6(t *testing.T) {
	ns := nstest.Temp(t, "sock6")
	for _, batch := range []int{1, 8} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			var sock, peer *net.UDPConn
			inNS(t, ns, func() (err error) {
				if sock, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
					return err
				}
				peer, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
				return err
			})
			defer peer.Close()
			c, err := dgram.NewWith(sock, dgram.Options{Batch: batch, Offload: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.Offloads(); got != "off (IPv6 socket)" && batch > 1 {
				t.Errorf("Offloads = %q, want off (IPv6 socket)", got)
			}
			peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			sockAP := sock.LocalAddr().(*net.UDPAddr).AddrPort()
			const count = 5
			for i := 0; i < count; i++ {
				if _, err := peer.WriteToUDPAddrPort([]byte(fmt.Sprintf("in %d", i)), sockAP); err != nil {
					t.Fatal(err)
				}
			}
			got := 0
			deadline := time.Now().Add(5 * time.Second)
			for got < count && time.Now().Before(deadline) {
				in := slots(batch, 64)
				n, err := c.Read(in)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range in[:n] {
					if want := fmt.Sprintf("in %d", got); string(p.Bytes()) != want || p.Addr != peerAP {
						t.Fatalf("read %q from %s, want %q from %s", p.Bytes(), p.Addr, want, peerAP)
					}
					got++
				}
			}
			if got != count {
				t.Fatalf("read %d datagrams, want %d", got, count)
			}
			out := slots(2, 64)
			for i := range out {
				out[i].Len = copy(out[i].Buf[out[i].Off:], fmt.Sprintf("out %d", i))
				out[i].Addr = peerAP
			}
			if n, err := c.Write(out); n != 2 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			buf := make([]byte, 64)
			for i := range out {
				if err := peer.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
					t.Fatal(err)
				}
				n, from, err := peer.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf("out %d", i); string(buf[:n]) != want || from != sockAP {
					t.Fatalf("peer read %q from %s, want %q from %s", buf[:n], from, want, sockAP)
				}
			}
		})
	}
}

// TestConnRejectsOtherFamilies: a socket that is neither IPv4 nor IPv6 is refused.
func TestConnRejectsOtherFamilies(t *testing.T) {
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "@weft-dgram-test-" + fmt.Sprint(time.Now().UnixNano()), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	if _, err := dgram.New(sock, 4); err == nil {
		t.Fatal("New accepted a unix socket")
	}
}

// BenchmarkConnWrite measures sending 1400-byte datagrams through a Conn,
// one per system call (batch=1, the udp backend's Batch=false) against batches (sendmmsg).
func BenchmarkConnWrite(b *testing.B) {
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
			c, err := dgram.New(sock, batch)
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
