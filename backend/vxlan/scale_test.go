package vxlan

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/subnet"
)

// scaleNetwork holds the fake peers' /24 subnets (2 000 of them do not fit in a /16).
var scaleNetwork = netip.MustParsePrefix("10.128.0.0/9")

// fakePeer returns the vxlan lease of fake peer i: subnet 10.128.0.0/24 + i, a PublicIP in
// 198.18.0.0/15 (nothing is ever sent there: an FDB entry's dst needs no route) and a
// made-up VtepMAC. Fake peer 0 is the node itself.
func fakePeer(i int) subnet.Lease {
	var sn, pub [4]byte
	binary.BigEndian.PutUint32(sn[:], binary.BigEndian.Uint32(scaleNetwork.Addr().AsSlice())+uint32(i)<<8)
	binary.BigEndian.PutUint32(pub[:], 198<<24|18<<16+uint32(i)+1)
	mac := net.HardwareAddr{0x02, 0x5c, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
	return subnet.Lease{
		Subnet: netip.PrefixFrom(netip.AddrFrom4(sn), 24),
		Attrs: subnet.LeaseAttrs{PublicIP: netip.AddrFrom4(pub), BackendType: Name,
			BackendData: marshalLeaseData(1, mac)},
	}
}

// fakePeers returns fake peers from..to-1.
func fakePeers(from, to int) []subnet.Lease {
	ls := make([]subnet.Lease, 0, to-from)
	for i := from; i < to; i++ {
		ls = append(ls, fakePeer(i))
	}
	return ls
}

// scaleNode activates the backend in a fresh node namespace for subnet fakePeer(0), with
// scaleNetwork as the Network and a logger that drops everything (2 000 "Added peer" lines
// would measure the test log, not the backend).
func scaleNode(tb testing.TB) (*network, kerneltest.Node) {
	tb.Helper()
	kn, _ := kerneltest.TwoNodes(tb)
	var be backend.Backend
	err := nsutil.Do(kn.NS, func() error {
		ifc, err := net.InterfaceByName(kn.Iface)
		if err != nil {
			return err
		}
		be, err = New(backend.Env{
			Ext:     backend.ExternalInterface{Iface: ifc, IfaceAddr: kn.Addr, PublicIP: kn.Addr},
			Network: &subnet.Config{Network: scaleNetwork, SubnetLen: 24, BackendType: Name},
			Log:     logr.Discard(),
		})
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { be.(*Backend).Close() })
	ctx := context.Background()
	if _, err := be.Prepare(ctx); err != nil {
		tb.Fatal(err)
	}
	nw, err := be.Activate(ctx, fakePeer(0))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nw.Close() })
	return nw.(*network), kn
}

// countEntries counts the routes, neighbours and FDB entries on flannel.1, as ip and
// bridge list them.
func countEntries(tb testing.TB, ns string) (routes, neighs, fdb int) {
	tb.Helper()
	count := func(argv string, must string) int {
		out := kerneltest.MustRun(tb, ns, strings.Fields(argv)...)
		n := 0
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, must) {
				n++
			}
		}
		return n
	}
	return count("ip -4 route show dev flannel.1", "onlink"),
		count("ip -4 neigh show dev flannel.1", "PERMANENT"),
		count("bridge fdb show dev flannel.1", " dst ")
}

// scaleSizes are the peer counts the scale benchmark measures.
var scaleSizes = []int{100, 500, 2000}

// BenchmarkApplyPeers measures Apply of N peer events in one call into an empty device
// (ns/op), and at that size: one more peer joining, one leaving, and an idle reconcile
// pass (ms/join, ms/leave, ms/reconcile). Run it with
//
//	go test -run XXX -bench ApplyPeers -benchtime 3x ./backend/vxlan
func BenchmarkApplyPeers(b *testing.B) {
	for _, size := range scaleSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			nw, kn := scaleNode(b)
			ctx := context.Background()
			peers := fakePeers(1, size+1)
			extra := fakePeer(size + 1)
			var join, leave, reconcile time.Duration
			b.ResetTimer()
			for range b.N {
				if err := nw.Apply(ctx, added(peers...)); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if r, n, f := countEntries(b, kn.NS); r != size || n != size || f != size {
					b.Fatalf("after Apply of %d peers: %d routes, %d neighbours, %d fdb entries", size, r, n, f)
				}
				start := time.Now()
				if err := nw.Apply(ctx, added(extra)); err != nil {
					b.Fatal(err)
				}
				join += time.Since(start)
				start = time.Now()
				if err := nw.Apply(ctx, removed(extra)); err != nil {
					b.Fatal(err)
				}
				leave += time.Since(start)
				start = time.Now()
				if drift, err := nw.reconcile(); err != nil || drift {
					b.Fatalf("idle reconcile: drift %v, err %v", drift, err)
				}
				reconcile += time.Since(start)
				if err := nw.Apply(ctx, removed(peers...)); err != nil {
					b.Fatal(err)
				}
				if r, n, f := countEntries(b, kn.NS); r+n+f != 0 {
					b.Fatalf("after removing every peer: %d routes, %d neighbours, %d fdb entries", r, n, f)
				}
				b.StartTimer()
			}
			b.StopTimer()
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
			b.ReportMetric(ms(join), "ms/join")
			b.ReportMetric(ms(leave), "ms/leave")
			b.ReportMetric(ms(reconcile), "ms/reconcile")
		})
	}
}

// BenchmarkReconcileIdle measures a reconcile pass that finds 2 000 peers in place: what
// Run pays on every relevant kernel change and every period (time and garbage per pass).
func BenchmarkReconcileIdle(b *testing.B) {
	nw, _ := scaleNode(b)
	if err := nw.Apply(context.Background(), added(fakePeers(1, 2001)...)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if drift, err := nw.reconcile(); err != nil || drift {
			b.Fatalf("idle reconcile: drift %v, err %v", drift, err)
		}
	}
}
