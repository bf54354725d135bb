//go:build linux

package tun_test

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
	"github.com/weftnet/weft/backend/internal/fastpath/tun"
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

func mustRun(t *testing.T, ns string, argv ...string) string {
	t.Helper()
	out, err := nstest.Run(ns, argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readIPv4 reads from the TUN until an IPv4 packet arrives (the kernel may also send IPv6
// router solicitations into a fresh device).
func readIPv4(t *testing.T, dev *tun.Device, in []fastpath.Packet) []byte {
	t.Helper()
	for i := 0; i < 50; i++ {
		n, err := dev.Read(in)
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
	if err := tun.Check(); err != nil {
		t.Skip(err)
	}
	ns := nstest.Temp(t, "tun")
	var dev *tun.Device
	inNS(t, ns, func() (err error) { dev, err = tun.Open("wtun0", true, 8); return err })
	defer dev.Close()
	if dev.Name() != "wtun0" || dev.BatchSize() != 8 {
		t.Fatalf("name %q batch %d", dev.Name(), dev.BatchSize())
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
	pkt := readIPv4(t, dev, in)
	if !bytes.Equal(pkt[12:16], []byte{10, 9, 0, 0}) || !bytes.Equal(pkt[16:20], []byte{10, 9, 1, 5}) || !bytes.HasSuffix(pkt, []byte("to the tun")) {
		t.Fatalf("read % x", pkt)
	}

	// A packet written into the TUN enters the kernel: an echo request to the TUN's own
	// address from 10.9.1.5 is answered back into the TUN.
	echo := packettest.ICMPEcho("10.9.1.5", "10.9.0.0", 77)
	w := slots(1, 1500)
	w[0].Len = copy(w[0].Buf[w[0].Off:], echo)
	if n, err := dev.Write(w); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	reply := readIPv4(t, dev, in)
	if reply[9] != 1 || reply[20] != 0 || !bytes.Equal(reply[16:20], []byte{10, 9, 1, 5}) {
		t.Fatalf("no echo reply: % x", reply)
	}

	// Close wakes a blocked Read; the persistent device, its address and route stay.
	errc := make(chan error, 1)
	go func() { _, err := dev.Read(in); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	dev.Close()
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
	inNS(t, ns, func() error { return tun.EnsurePersistent("wtun0") })
	inNS(t, ns, func() (err error) { dev, err = tun.Open("wtun0", true, 1); return err })
	defer dev.Close()
	if again := mustRun(t, ns, "cat", "/sys/class/net/wtun0/ifindex"); again != index {
		t.Fatalf("ifindex %s after adopting, was %s", again, index)
	}
	if out := mustRun(t, ns, "ip", "-4", "addr", "show", "wtun0"); !strings.Contains(out, "10.9.0.0/32") {
		t.Fatalf("address gone: %q", out)
	}

	// A second queue on a single-queue TUN is refused with a clear message.
	inNS(t, ns, func() error {
		_, err := tun.Open("wtun0", true, 1)
		if err == nil || !strings.Contains(err.Error(), "in use") {
			return fmt.Errorf("second Open: %v, want an in-use error", err)
		}
		return nil
	})
	// A non-TUN device of the name is refused with a clear message.
	mustRun(t, ns, "ip", "link", "add", "wdummy0", "type", "bridge")
	inNS(t, ns, func() error {
		err := tun.EnsurePersistent("wdummy0")
		if err == nil || !strings.Contains(err.Error(), "another type") {
			return fmt.Errorf("EnsurePersistent on a bridge: %v, want a clear error", err)
		}
		return nil
	})

	// No allocation per written and read packet.
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := dev.Write(w); err != nil {
			t.Fatal(err)
		}
		if _, err := dev.Read(in[:1]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per TUN write+read", allocs)
	}
}

func TestCheckSaysWhatIsMissing(t *testing.T) {
	err := tun.CheckAt(t.TempDir() + "/tun")
	if !errors.Is(err, tun.ErrNoDriver) || !strings.Contains(err.Error(), "modprobe tun") || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Check on a missing path: %v", err)
	}
	if err := tun.CheckAt(t.TempDir()); !errors.Is(err, tun.ErrNoDriver) {
		t.Fatalf("Check on a directory: %v", err)
	}
}
