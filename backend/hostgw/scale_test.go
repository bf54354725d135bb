package hostgw

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

// scaleUnderlay is a second address on the node's eth0, so that 2 000 fake peers can be
// directly connected (host-gw programs only those). Nothing is ever sent to them.
const scaleUnderlay = "198.18.0.1/15"

// fakePeer returns the host-gw lease of fake peer i: subnet 10.128.0.0/24 + i, PublicIP
// 198.18.0.1 + i. Fake peer 0 is the node itself.
func fakePeer(i int) subnet.Lease {
	var sn, pub [4]byte
	binary.BigEndian.PutUint32(sn[:], binary.BigEndian.Uint32(scaleNetwork.Addr().AsSlice())+uint32(i)<<8)
	binary.BigEndian.PutUint32(pub[:], 198<<24|18<<16+uint32(i)+1)
	return subnet.Lease{
		Subnet: netip.PrefixFrom(netip.AddrFrom4(sn), 24),
		Attrs:  subnet.LeaseAttrs{PublicIP: netip.AddrFrom4(pub), BackendType: Name},
	}
}

func fakeEvents(typ subnet.EventType, from, to int) []subnet.Event {
	evs := make([]subnet.Event, 0, to-from)
	for i := from; i < to; i++ {
		evs = append(evs, subnet.Event{Type: typ, Lease: fakePeer(i)})
	}
	return evs
}

// scaleNode activates the backend in a fresh node namespace whose eth0 also holds
// scaleUnderlay, with a logger that drops everything.
func scaleNode(tb testing.TB) (*network, kerneltest.Node) {
	tb.Helper()
	kn, _ := kerneltest.TwoNodes(tb)
	kerneltest.MustRun(tb, kn.NS, "ip", "addr", "add", scaleUnderlay, "dev", kn.Iface)
	var nw backend.Network
	err := nsutil.Do(kn.NS, func() error {
		ifc, err := net.InterfaceByName(kn.Iface)
		if err != nil {
			return err
		}
		be, err := newBackend(backend.Env{
			Ext:     backend.ExternalInterface{Iface: ifc, IfaceAddr: kn.Addr, PublicIP: kn.Addr},
			Network: &subnet.Config{EnableIPv4: true, Network: scaleNetwork, SubnetLen: 24, BackendType: Name},
			Log:     logr.Discard(),
		})
		if err != nil {
			return err
		}
		nw, err = be.Activate(context.Background(), fakePeer(0))
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nw.Close() })
	return nw.(*network), kn
}

// countRoutes counts the routes into scaleNetwork through eth0, as ip lists them.
func countRoutes(tb testing.TB, ns string) int {
	tb.Helper()
	out := kerneltest.MustRun(tb, ns, "ip", "-4", "route", "show", "root", scaleNetwork.String())
	return strings.Count(out, " via 198.1")
}

// scaleSizes are the peer counts the scale benchmark measures.
var scaleSizes = []int{100, 500, 2000}

// BenchmarkApplyPeers measures Apply of N peer events in one call (ns/op), and at that
// size: one more peer joining, one leaving, and an idle reconcile pass. Run it with
//
//	go test -run XXX -bench ApplyPeers -benchtime 3x ./backend/hostgw
func BenchmarkApplyPeers(b *testing.B) {
	for _, size := range scaleSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			nw, kn := scaleNode(b)
			ctx := context.Background()
			join, leave := fakeEvents(subnet.Added, size+1, size+2), fakeEvents(subnet.Removed, size+1, size+2)
			var joinT, leaveT, reconcileT time.Duration
			b.ResetTimer()
			for range b.N {
				if err := nw.Apply(ctx, fakeEvents(subnet.Added, 1, size+1)); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if n := countRoutes(b, kn.NS); n != size {
					b.Fatalf("after Apply of %d peers: %d routes", size, n)
				}
				start := time.Now()
				if err := nw.Apply(ctx, join); err != nil {
					b.Fatal(err)
				}
				joinT += time.Since(start)
				start = time.Now()
				if err := nw.Apply(ctx, leave); err != nil {
					b.Fatal(err)
				}
				leaveT += time.Since(start)
				start = time.Now()
				if drift, err := nw.reconcile(); err != nil || drift {
					b.Fatalf("idle reconcile: drift %v, err %v", drift, err)
				}
				reconcileT += time.Since(start)
				if err := nw.Apply(ctx, fakeEvents(subnet.Removed, 1, size+1)); err != nil {
					b.Fatal(err)
				}
				if n := countRoutes(b, kn.NS); n != 0 {
					b.Fatalf("after removing every peer: %d routes", n)
				}
				b.StartTimer()
			}
			b.StopTimer()
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
			b.ReportMetric(ms(joinT), "ms/join")
			b.ReportMetric(ms(leaveT), "ms/leave")
			b.ReportMetric(ms(reconcileT), "ms/reconcile")
		})
	}
}
