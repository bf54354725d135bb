package daemon

import (
	"context"
	"os"
	"runtime/debug"
	"time"

	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/firewall/iptables"
	"github.com/weftnet/weft/subnet"
)

// What keeps a start fast and a large cluster cheap, in the order things happen:
//
//   - The subnet file is written while the peers are listed and programmed (its fsync takes
//     milliseconds), not before.
//   - The host's iptables front end is looked up (its mode detected: a few *-save runs) while
//     the config is read and the backend prepared, not before the lease (startFirewall).
//   - The first firewall pass waits for the first Apply: the routes to the peers come
//     first, the iptables runs after (runFirewallAfter).
//   - Peer batches that queue while Apply is busy are applied as one (drainEvents): a
//     backend's Apply costs about one table dump per call, so 2 000 leases written one by
//     one cost a few dumps, not 2 000.
//   - The runtime's soft memory limit follows the peer count (memoryGovernor).

// eventQueue is how many peer batches WatchPeers may queue while Apply is busy.
const eventQueue = 256

// firewallWait bounds how long the first firewall pass waits for the first Apply.
const firewallWait = time.Second

// drainEvents appends every batch already queued on ch to first, in order.
func drainEvents(ch <-chan []subnet.Event, first []subnet.Event) []subnet.Event {
	for {
		select {
		case more := <-ch:
			first = append(first, more...)
		default:
			return first
		}
	}
}

// iptablesLookup is the outcome of iptables.Find, made in the background.
type iptablesLookup struct {
	tool *iptables.Tool
	err  error
}

// startFirewall looks for the host's iptables front end in the background (iptables.Find:
// a few *-save runs), while the config is read and the backend prepared; the returned
// function waits for it and makes the firewall the config asks for (newFirewall). iptables
// is looked for in nftables mode too: its leftovers are cleaned away. Nothing is looked
// for when no rule is wanted.
func (d *Daemon) startFirewall() func(enableNFTables bool) (firewall.Firewall, error) {
	ch := make(chan iptablesLookup, 1)
	if d.wantsFirewall() {
		go func() {
			tool, err := iptables.Find(d.log.WithName("iptables"))
			ch <- iptablesLookup{tool, err}
		}()
	} else {
		ch <- iptablesLookup{}
	}
	return func(enableNFTables bool) (firewall.Firewall, error) {
		r := <-ch
		return d.newFirewall(enableNFTables, r.tool, r.err)
	}
}

// runFirewallAfter runs fw once the first Apply is done (applied closed) or firewallWait
// has passed, until ctx ends.
func runFirewallAfter(ctx context.Context, fw firewall.Firewall, applied <-chan struct{}) error {
	t := time.NewTimer(firewallWait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil
	case <-applied:
	case <-t.C:
	}
	return fw.Run(ctx)
}

// The Go runtime's memory. By default the garbage collector lets the heap grow to twice
// what is live, and keeps freed memory for a while; a burst of peer events (thousands of
// leases listed, thousands of netlink requests, a reconcile's table dumps) then leaves the
// process tens of megabytes large for nothing. Unless GOMEMLIMIT is set, weftd sets a soft
// limit that grows with the number of peers: about 1 KiB of live heap each, and room for
// the runtime and a pass's garbage on top. It is soft: a heap that needs more gets it, the
// collector just works harder (at most half the CPU) near the limit.
const (
	baseMemoryLimit = 16 << 20
	peerMemory      = 1 << 10
)

// memoryLimit is the soft limit for a node with peers peers, and at least floor (what the
// data plane's own buffers need: backend.MemoryUser).
func memoryLimit(peers int, floor int64) int64 {
	return max(baseMemoryLimit+int64(peers)*peerMemory, floor)
}

// After a burst of at least burstEvents peer events (in one Apply or in several, each less
// than burstSettle after the one before), once burstSettle has passed without another
// Apply (the reconcile passes and firewall runs the burst causes are done by then), the
// memory the burst used and freed is handed back to the system at once (debug.FreeOSMemory:
// one collection of a heap of a few megabytes, about a millisecond) instead of over minutes.
const (
	burstEvents = 256
	burstSettle = 2 * time.Second
)

// memoryGovernor keeps the runtime's soft memory limit at memoryLimit of the current peer
// count, and returns memory after bursts. Its methods are used from one goroutine at a time
// (the daemon's start, then the Apply loop, then stop).
type memoryGovernor struct {
	enabled bool        // GOMEMLIMIT is not set: the operator's choice wins
	limit   int64       // the limit last set
	peers   int         // the peer count last set
	floor   int64       // the running Network's MemoryFloor; 0: none
	burst   int         // events applied in the current burst
	last    time.Time   // when the last Apply was noted
	release *time.Timer // pending FreeOSMemory after a burst; nil until the first
}

// applied notes an Apply of n events.
func (g *memoryGovernor) applied(n int) {
	if !g.enabled {
		return
	}
	now := time.Now()
	if now.Sub(g.last) > burstSettle {
		g.burst = 0
	}
	g.burst += n
	g.last = now
	if g.burst < burstEvents {
		return
	}
	if g.release == nil {
		g.release = time.AfterFunc(burstSettle, debug.FreeOSMemory)
		return
	}
	g.release.Reset(burstSettle)
}

// stop cancels a pending release.
func (g *memoryGovernor) stop() {
	if g.release != nil {
		g.release.Stop()
	}
}

func newMemoryGovernor() *memoryGovernor {
	_, set := os.LookupEnv("GOMEMLIMIT")
	return &memoryGovernor{enabled: !set}
}

// setFloor keeps the limit at least at floor bytes (0: no floor).
func (g *memoryGovernor) setFloor(floor int64) {
	g.floor = floor
	g.setPeers(g.peers)
}

// setPeers sets the limit for n peers.
func (g *memoryGovernor) setPeers(n int) {
	g.peers = n
	if l := memoryLimit(n, g.floor); g.enabled && l != g.limit {
		debug.SetMemoryLimit(l)
		g.limit = l
	}
}
