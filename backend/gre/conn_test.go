//go:build linux

package gre

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/pkg/nsutil"
)

func slots(n, size int) []fastpath.Packet {
	p := make([]fastpath.Packet, n)
	for i := range p {
		p[i] = fastpath.Packet{Buf: make([]byte, fastpath.Headroom+size), Off: fastpath.Headroom}
	}
	return p
}

// TestConn sends GRE between two raw-socket conns over a veth pair in a namespace pair and
// checks headers, batching, the no-headroom rule and that a round trip does not allocate.
func TestConn(t *testing.T) {
	skipWithoutNamespaces(t)
	c := newCluster(t)
	log := ktesting.NewLogger(t, ktesting.NewConfig())
	var ca, cb *conn
	for _, x := range []struct {
		ns, addr string
		c        **conn
	}{{c.nodeA, "192.0.2.1", &ca}, {c.nodeB, "192.0.2.2", &cb}} {
		if err := nsutil.Do(x.ns, func() (err error) {
			*x.c, err = listenGRE(netip.MustParseAddr(x.addr), 8, log)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	defer ca.Close()
	defer cb.Close()
	peerB := netip.MustParseAddrPort("192.0.2.2:0")

	out := slots(3, 100)
	for i := range out {
		out[i].Len = copy(out[i].Buf[out[i].Off:], innerUDP("10.244.1.2", "10.244.2.2", 7, 64, string(rune('a'+i))))
		out[i].Addr = peerB
	}
	if n, err := ca.Write(out); n != 3 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	for i := range out {
		if out[i].Off != fastpath.Headroom || out[i].Len != 29 {
			t.Fatalf("Write left packet %d at Off %d Len %d", i, out[i].Off, out[i].Len)
		}
	}
	in := slots(8, 2000)
	for got := 0; got < 3; {
		n, err := cb.Read(in)
		if err != nil {
			t.Fatal(err)
		}
		for i := range in[:n] {
			p := &in[i]
			want := innerUDP("10.244.1.2", "10.244.2.2", 7, 64, string(rune('a'+got)))
			if !bytes.Equal(p.Bytes(), want) || p.Addr != netip.MustParseAddrPort("192.0.2.1:0") || p.Off != fastpath.Headroom+24 {
				t.Fatalf("read % x from %s at Off %d, want % x from 192.0.2.1:0", p.Bytes(), p.Addr, p.Off, want)
			}
			got++
		}
		for i := range in {
			in[i].Off = fastpath.Headroom
		}
	}

	// A packet without headroom is skipped; the rest of the batch goes out.
	mixed := slots(3, 100)
	for i := range mixed {
		mixed[i].Len = copy(mixed[i].Buf[mixed[i].Off:], innerUDP("10.244.1.2", "10.244.2.2", 7, 64, "m"))
		mixed[i].Addr = peerB
	}
	copy(mixed[1].Buf, mixed[1].Bytes())
	mixed[1].Off = 2
	if n, err := ca.Write(mixed); n != 2 || !errors.Is(err, errNoHeadroom) {
		t.Fatalf("Write with one packet lacking headroom = %d, %v", n, err)
	}
	for got := 0; got < 2; {
		n, err := cb.Read(in)
		if err != nil {
			t.Fatal(err)
		}
		got += n
		for i := range in {
			in[i].Off = fastpath.Headroom
		}
	}

	// No allocation per round trip of a batch.
	one := out[:2]
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := ca.Write(one); err != nil {
			t.Fatal(err)
		}
		for left := len(one); left > 0; {
			for i := range in {
				in[i].Off = fastpath.Headroom
			}
			n, err := cb.Read(in)
			if err != nil {
				t.Fatal(err)
			}
			left -= n
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch round trip", allocs)
	}

	// Close ends a blocked Read with net.ErrClosed.
	errc := make(chan error, 1)
	go func() { _, err := cb.Read(in); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	cb.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Read")
	}
}
