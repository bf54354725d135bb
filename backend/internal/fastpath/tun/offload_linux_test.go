//go:build linux

package tun_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
	"github.com/weftnet/weft/backend/internal/fastpath/tun"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/nstest"
)

// The test plays a TCP server at 10.99.0.2:80 behind a TUN with offloads, and a real
// client socket in the namespace talks to it: the kernel hands the client's data to the
// TUN as TSO superpackets, which Read must cut into segments with correct checksums, and
// it must accept what Write coalesces (GSO with a partial checksum) on the way back.

const (
	offTUN     = "wto0"
	clientAddr = "10.99.0.1"
	serverAddr = "10.99.0.2"
	serverMSS  = 1000
)

func readTCP(t *testing.T, dev *tun.Device, in []fastpath.Packet, deadline time.Time) [][]byte {
	t.Helper()
	for time.Now().Before(deadline) {
		n, err := dev.Read(in)
		if err != nil {
			t.Fatal(err)
		}
		var out [][]byte
		for i := range in[:n] {
			b := in[i].Bytes()
			if len(b) >= 40 && b[0] == 0x45 && b[9] == packettest.ProtoTCP {
				out = append(out, append([]byte(nil), b...))
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	t.Fatal("no TCP packet from the TUN in time")
	return nil
}

func writePkts(t *testing.T, dev *tun.Device, pkts ...[]byte) {
	t.Helper()
	batch := make([]fastpath.Packet, len(pkts))
	for i, b := range pkts {
		batch[i] = fastpath.Packet{Buf: append(make([]byte, fastpath.Headroom), b...), Off: fastpath.Headroom, Len: len(b)}
	}
	if n, err := dev.Write(batch); n != len(pkts) || err != nil {
		t.Fatalf("TUN Write = %d of %d, %v", n, len(pkts), err)
	}
}

func TestTUNOffloadWithKernelTCP(t *testing.T) {
	if err := tun.Check(); err != nil {
		t.Skip(err)
	}
	ns := nstest.Temp(t, "tunoff")
	var dev *tun.Device
	if err := nsutil.Do(ns, func() (err error) {
		dev, err = tun.OpenWith(offTUN, tun.Options{Batch: 64, Offload: true})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if got := dev.Offloads(); got != "tso4,tso6,csum,gro" {
		t.Fatalf("Offloads() = %q", got)
	}
	for _, argv := range [][]string{
		{"ip", "addr", "add", clientAddr + "/32", "dev", offTUN},
		{"ip", "link", "set", offTUN, "up"},
		{"ip", "route", "add", "10.99.0.0/24", "dev", offTUN},
	} {
		if _, err := nstest.Run(ns, argv...); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := nstest.Run(ns, "ethtool", "-k", offTUN); err == nil && !strings.Contains(out, "tcp-segmentation-offload: on") {
		t.Fatalf("TSO is not on for the TUN:\n%s", out)
	}

	type dialed struct {
		c   net.Conn
		err error
	}
	dialc := make(chan dialed, 1)
	go func() {
		var d dialed
		d.err = nsutil.Do(ns, func() error {
			d.c, d.err = net.DialTimeout("tcp", serverAddr+":80", 10*time.Second)
			return d.err
		})
		dialc <- d
	}()

	in := make([]fastpath.Packet, 64)
	for i := range in {
		in[i] = fastpath.Packet{Buf: make([]byte, fastpath.Headroom+1500), Off: fastpath.Headroom}
	}
	deadline := time.Now().Add(20 * time.Second)

	// Handshake. The SYN came with a partial checksum (TUN_F_CSUM), which Read completed.
	syn := readTCP(t, dev, in, deadline)[0]
	if packettest.TCPFlags(syn)&packettest.FlagSYN == 0 || !packettest.RefTCPValid(syn, 20) || packettest.RefChecksum(syn[:20]) != 0 {
		t.Fatalf("first packet is not a valid SYN: %x", syn)
	}
	cport := binary.BigEndian.Uint16(syn[20:])
	cseq := packettest.TCPSeq(syn) + 1
	const sseq0 = 5000
	server := func(seq, ack uint32, flags uint8, payload []byte) packettest.TCP {
		return packettest.TCP{Src: serverAddr, Dst: clientAddr, SPort: 80, DPort: cport, Seq: seq, Ack: ack,
			Flags: flags, Window: 0xffff, ID: 1, TTL: 64, Payload: payload}
	}
	synack := server(sseq0, cseq, packettest.FlagSYN|packettest.FlagACK, nil)
	synack.TCPOptions = []byte{2, 4, serverMSS >> 8, serverMSS & 0xff, 1, 3, 3, 7} // MSS, NOP, window scale 7
	writePkts(t, dev, synack.Build())
	d := <-dialc
	if d.err != nil {
		t.Fatal(d.err)
	}
	defer d.c.Close()

	// Client to server: the kernel's TSO superpackets, cut by Read.
	rng := rand.New(rand.NewPCG(5, 6))
	up := make([]byte, 1<<20)
	for i := range up {
		up[i] = byte(rng.Uint32())
	}
	werr := make(chan error, 1)
	go func() { _, err := d.c.Write(up); werr <- err }()
	got := make([]byte, 0, len(up))
	maxPerRead := 0
	for len(got) < len(up) {
		pkts := readTCP(t, dev, in, deadline)
		data := 0
		for _, p := range pkts {
			if packettest.RefChecksum(p[:20]) != 0 || !packettest.RefTCPValid(p, 20) || len(p) > 1500 {
				t.Fatalf("segment with a wrong checksum or too long (%d bytes)", len(p))
			}
			pl := packettest.TCPPayload(p)
			if len(pl) == 0 {
				continue
			}
			if len(pl) > serverMSS {
				t.Fatalf("segment of %d bytes with MSS %d", len(pl), serverMSS)
			}
			data++
			if off := int(packettest.TCPSeq(p) - cseq); off == len(got) {
				got = append(got, pl...)
			}
		}
		maxPerRead = max(maxPerRead, data)
		writePkts(t, dev, server(sseq0+1, cseq+uint32(len(got)), packettest.FlagACK, nil).Build())
	}
	if !bytes.Equal(got, up) {
		t.Fatal("the client's data arrived changed")
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	t.Logf("up to %d segments per Read", maxPerRead)

	// Server to client: segments written in batches, coalesced by Write.
	down := up[:300*serverMSS]
	rerr := make(chan error, 1)
	rcvd := make([]byte, len(down))
	go func() { _, err := io.ReadFull(d.c, rcvd); rerr <- err }()
	ack := cseq + uint32(len(up))
	for off := 0; off < len(down); {
		var batch [][]byte
		for len(batch) < 40 && off < len(down) {
			p := server(sseq0+1+uint32(off), ack, packettest.FlagACK, down[off:off+serverMSS])
			p.ID = uint16(off / serverMSS)
			batch = append(batch, p.Build())
			off += serverMSS
		}
		writePkts(t, dev, batch...)
		// Wait for the client to acknowledge the batch.
		for acked := false; !acked; {
			for _, p := range readTCP(t, dev, in, deadline) {
				a := binary.BigEndian.Uint32(p[28:])
				acked = acked || int(a-(sseq0+1)) >= off
			}
		}
	}
	select {
	case err := <-rerr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not receive the coalesced data")
	}
	if !bytes.Equal(rcvd, down) {
		t.Fatal("the server's data arrived changed")
	}

	// Single packets through the virtio-net header path do not allocate.
	echo := packettest.ICMPEcho(serverAddr, clientAddr, 1)
	w := []fastpath.Packet{{Buf: append(make([]byte, fastpath.Headroom), echo...), Off: fastpath.Headroom, Len: len(echo)}}
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := dev.Write(w); err != nil {
			t.Fatal(err)
		}
		if _, err := dev.Read(in[:1]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per TUN write+read with offloads", allocs)
	}

	// Close leaves the persistent device without offloads.
	dev.Close()
	if out, err := nstest.Run(ns, "ethtool", "-k", offTUN); err == nil && strings.Contains(out, "tcp-segmentation-offload: on") {
		t.Fatalf("TSO still on after Close:\n%s", out)
	}
}
