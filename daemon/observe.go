package daemon

import (
	"net/netip"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/pkg/status"
	"github.com/weftnet/weft/subnet"
)

// view is what the daemon shows operators (/status): the facts of the running session.
// It is written by the daemon's loops and read by HTTP handlers.
type view struct {
	mu      sync.Mutex // guards everything below
	started time.Time
	ext     backend.ExternalInterface
	netCfg  *subnet.Config // the running network config; nil between sessions
	btype   string
	lease   subnet.Lease
	renewed time.Time
	nw      backend.Network // nil between sessions
	active  bool
	peers   map[string]viewPeer          // by lease key
	ignored func() []subnet.IgnoredLease // the leases admission refused; nil between sessions
	// configWarnings are the running network config's warnings (subnet.Config.Warnings).
	configWarnings []string
}

func (v *view) setConfigWarnings(w []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.configWarnings = w
}

// viewPeer is what /status shows of a peer's lease: the rest of the lease is not kept, so
// that thousands of peers cost little memory here.
type viewPeer struct {
	subnet, ipv6Subnet   netip.Prefix
	publicIP, publicIPv6 netip.Addr
	backendType          string
}

func (v *view) setSession(nw backend.Network, btype string, netCfg *subnet.Config, l subnet.Lease, ignored func() []subnet.IgnoredLease) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.nw, v.btype, v.netCfg, v.lease, v.active, v.ignored = nw, btype, netCfg, l, false, ignored
	v.peers = map[string]viewPeer{}
}

func (v *view) renewedLease(l subnet.Lease) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lease, v.renewed = l, time.Now()
}

// applied folds peer events in and returns the peers' public addresses of the families the
// network runs (for the firewall) and the peer count.
func (v *view) applied(evs []subnet.Event) ([]netip.Addr, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.active = true
	for _, e := range evs {
		l := e.Lease
		if e.Type == subnet.Removed {
			delete(v.peers, l.Key())
		} else {
			v.peers[l.Key()] = viewPeer{subnet: l.Subnet, ipv6Subnet: l.IPv6Subnet, publicIP: l.Attrs.PublicIP,
				publicIPv6: l.Attrs.PublicIPv6, backendType: l.Attrs.BackendType}
		}
	}
	v4, v6 := v.netCfg == nil || v.netCfg.EnableIPv4, v.netCfg != nil && v.netCfg.EnableIPv6
	addrs := make([]netip.Addr, 0, len(v.peers))
	for _, p := range v.peers {
		if v4 && p.subnet.IsValid() && p.publicIP.IsValid() {
			addrs = append(addrs, p.publicIP)
		}
		if v6 && p.ipv6Subnet.IsValid() && p.publicIPv6.IsValid() {
			addrs = append(addrs, p.publicIPv6)
		}
	}
	return addrs, len(v.peers)
}

func (v *view) packetStats() (backend.PacketStats, bool) {
	v.mu.Lock()
	nw := v.nw
	v.mu.Unlock()
	if pc, ok := nw.(backend.PacketCounter); ok {
		return pc.PacketStats(), true
	}
	return backend.PacketStats{}, false
}

// network is the running IPv4 network (zero between sessions and in an IPv6-only network).
func (v *view) network() netip.Prefix {
	if v.netCfg == nil {
		return netip.Prefix{}
	}
	return v.netCfg.Network
}

// ipv6Network is the running IPv6 network (zero between sessions and without IPv6).
func (v *view) ipv6Network() netip.Prefix {
	if v.netCfg == nil {
		return netip.Prefix{}
	}
	return v.netCfg.IPv6Network
}

// status renders the view for GET /status.
func (v *view) status(version string) status.Status {
	v.mu.Lock()
	defer v.mu.Unlock()
	host, _ := os.Hostname()
	st := status.Status{
		Version: version, Time: time.Now(), Started: v.started,
		Node: status.Node{Hostname: host, InterfaceIP: v.ext.IfaceAddr, PublicIP: v.ext.PublicIP,
			InterfaceIPv6: v.ext.IfaceAddrV6, PublicIPv6: v.ext.PublicIPv6},
		Lease: status.Lease{Network: v.network(), Subnet: v.lease.Subnet, IPv6Network: v.ipv6Network(), IPv6Subnet: v.lease.IPv6Subnet,
			Reserved: !v.lease.IsZero() && v.lease.Reserved(),
			Expires:  v.lease.Expiration, Renewed: v.renewed},
		Backend:        status.Backend{Type: v.btype, Active: v.active},
		ConfigWarnings: v.configWarnings,
		Peers:          []status.Peer{},
	}
	if v.ext.Iface != nil {
		st.Node.Interface = v.ext.Iface.Name
	}
	var desc backend.Description
	if v.nw != nil {
		st.Backend.MTU = v.nw.MTU()
		if d, ok := v.nw.(backend.Describer); ok {
			desc = d.Describe()
			st.Backend.Device, st.Backend.Info = desc.Device, desc.Info
		}
		if pc, ok := v.nw.(backend.PacketCounter); ok {
			ps := pc.PacketStats()
			st.Counters = map[string]uint64{"icmp-errors": ps.ICMPErrors}
			for k, n := range ps.Packets {
				st.Counters["packets/"+k] = n
			}
			for k, n := range ps.Bytes {
				st.Counters["bytes/"+k] = n
			}
			for k, n := range ps.Drops {
				st.Counters["drops/"+k] = n
			}
		}
	}
	for _, vp := range v.peers {
		p := status.Peer{Subnet: vp.subnet, PublicIP: vp.publicIP, IPv6Subnet: vp.ipv6Subnet, PublicIPv6: vp.publicIPv6,
			BackendType: vp.backendType, State: status.PeerProgrammed}
		// A backend describes a peer by the subnet it programs: the IPv4 one, else the IPv6 one.
		if ps, ok := desc.Peers[vp.subnet]; ok && vp.subnet.IsValid() {
			p.State, p.Reason = status.PeerState(ps.State), ps.Reason
		} else if ps, ok := desc.Peers[vp.ipv6Subnet]; ok && vp.ipv6Subnet.IsValid() {
			p.State, p.Reason = status.PeerState(ps.State), ps.Reason
		}
		st.Peers = append(st.Peers, p)
	}
	if v.ignored != nil {
		// Leases that are not peers are listed too, so that an operator sees why.
		for _, ig := range v.ignored() {
			if !ig.Subnet.IsValid() && !ig.IPv6Subnet.IsValid() {
				continue // a malformed key: no subnet to show; logged and counted
			}
			st.Peers = append(st.Peers, status.Peer{Subnet: ig.Subnet, PublicIP: ig.Attrs.PublicIP, IPv6Subnet: ig.IPv6Subnet,
				PublicIPv6: ig.Attrs.PublicIPv6, BackendType: ig.Attrs.BackendType,
				State: status.PeerIgnored, Reason: ig.Reason + ": " + ig.Detail})
		}
	}
	sort.Slice(st.Peers, func(i, j int) bool {
		a, b := st.Peers[i], st.Peers[j]
		if a.Subnet != b.Subnet {
			return a.Subnet.Addr().Less(b.Subnet.Addr()) // IPv6-only peers (no IPv4 subnet) first
		}
		return a.IPv6Subnet.Addr().Less(b.IPv6Subnet.Addr())
	})
	return st
}
