package daemon

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
)

func TestDrainEventsKeepsOrder(t *testing.T) {
	ch := make(chan []subnet.Event, 4)
	ev := func(third byte) subnet.Event {
		return subnet.Event{Lease: subnet.Lease{Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, third, 0}), 24)}}
	}
	ch <- []subnet.Event{ev(2)}
	ch <- []subnet.Event{ev(3), ev(4)}
	got := drainEvents(ch, []subnet.Event{ev(1)})
	var order []byte
	for _, e := range got {
		order = append(order, e.Lease.Subnet.Addr().As4()[2])
	}
	if !slices.Equal(order, []byte{1, 2, 3, 4}) {
		t.Fatalf("got subnets %v, want 1 2 3 4 in order", order)
	}
	if got := drainEvents(ch, nil); got != nil {
		t.Fatalf("empty queue gave %v", got)
	}
}

func TestMemoryLimitGrowsWithPeers(t *testing.T) {
	if memoryLimit(0, 0) != baseMemoryLimit || memoryLimit(2000, 0) != baseMemoryLimit+2000*peerMemory {
		t.Fatalf("memoryLimit(0) = %d, memoryLimit(2000) = %d", memoryLimit(0, 0), memoryLimit(2000, 0))
	}
	// A data plane's own buffers (wireguard-go's) set a floor; peers still raise it above.
	if memoryLimit(10, 192<<20) != 192<<20 || memoryLimit(300000, 192<<20) != baseMemoryLimit+300000*peerMemory {
		t.Fatalf("with a floor: %d, %d", memoryLimit(10, 192<<20), memoryLimit(300000, 192<<20))
	}
}

func TestMemoryGovernorBursts(t *testing.T) {
	g := &memoryGovernor{enabled: true}
	defer g.stop()
	for range burstEvents/16 - 1 {
		g.applied(16)
	}
	if g.release != nil {
		t.Fatal("release armed before a burst")
	}
	g.applied(16)
	if g.release == nil {
		t.Fatal("no release after a burst of small Applies")
	}
	g.last = time.Now().Add(-2 * burstSettle) // a long pause: a new burst starts from zero
	g.applied(1)
	if g.burst != 1 {
		t.Fatalf("burst = %d after a pause, want 1", g.burst)
	}
	off := &memoryGovernor{}
	off.applied(10 * burstEvents)
	off.setPeers(5)
	if off.release != nil || off.limit != 0 {
		t.Fatal("a governor with GOMEMLIMIT set changed something")
	}
}
