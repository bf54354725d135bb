package iptables

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/weftnet/weft/pkg/firewall"
)

// scalePeers returns n peer addresses from 198.18.0.1 on, stride apart: stride 1 gives one
// contiguous range, stride 2 a set no CIDR block can summarise.
func scalePeers(n, stride int) []netip.Addr {
	out := make([]netip.Addr, 0, n)
	a := netip.MustParseAddr("198.18.0.1")
	for range n {
		out = append(out, a)
		for range stride {
			a = a.Next()
		}
	}
	return out
}

// BenchmarkNSInputPeers measures, with the real iptables in a namespace, the first pass that
// installs the tunnel rules for N peers (ns/op), and at that size one pass after a peer
// joins, one after it leaves and one idle pass. Run it with
//
//	go test -run XXX -bench NSInputPeers -benchtime 3x ./pkg/firewall/iptables
func BenchmarkNSInputPeers(b *testing.B) {
	for _, bin := range []string{"iptables", "iptables-legacy"} {
		for _, stride := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/2000/stride%d", bin, stride), func(b *testing.B) {
				peers := scalePeers(2001, stride)
				extra, peers := peers[2000], peers[:2000]
				var join, leave, idle time.Duration
				for range b.N {
					b.StopTimer()
					e := newNSEnv(b, bin)
					m := newManager(e.r, e.sets, e.r.ipt.HasRandomFully(), allOn, logr.Discard())
					m.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
					m.SetTunnelPort(TunnelUDP, 8472)
					m.SetPeers(peers)
					e.do(b, func() error {
						b.StartTimer()
						if err := m.Sync(); err != nil {
							return err
						}
						b.StopTimer()
						for _, step := range []struct {
							peers []netip.Addr
							d     *time.Duration
						}{{append(peers[:len(peers):len(peers)], extra), &join}, {peers, &leave}, {peers, &idle}} {
							m.SetPeers(step.peers)
							start := time.Now()
							if err := m.Sync(); err != nil {
								return err
							}
							*step.d += time.Since(start)
						}
						return nil
					})
				}
				ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
				b.ReportMetric(ms(join), "ms/join")
				b.ReportMetric(ms(leave), "ms/leave")
				b.ReportMetric(ms(idle), "ms/idle")
			})
		}
	}
}
