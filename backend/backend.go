// Package backend defines the contract between the daemon and the data-plane backends
// (udp, vxlan, gre, host-gw). A backend never talks to the subnet store: it prepares its
// devices, tells the daemon what to publish in the lease, and then turns peer events into
// kernel (or userspace) state.
//
// Each backend lives in its own package below backend/ and is listed in the explicit table
// of Types in backend/backends; nothing registers itself from init().
package backend

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/subnet"
)

// ExternalInterface is the node's underlay interface, chosen by --iface and friends.
type ExternalInterface struct {
	Iface     *net.Interface // the link (Index, Name, MTU)
	IfaceAddr netip.Addr     // the IPv4 address selected on Iface
	PublicIP  netip.Addr     // the address peers send to (IfaceAddr unless --public-ip)
	// PublicIPIface names the interface of this node that holds PublicIP (Iface's name
	// when PublicIP is IfaceAddr); "" when none does: a NAT or load-balancer address.
	PublicIPIface string

	// The IPv6 counterparts, set when the network runs IPv6: the IPv6 address selected on
	// Iface, the address peers send IPv6 tunnel traffic to (--public-ipv6, else
	// IfaceAddrV6), and the interface holding it. In an IPv6-only network the IPv4 fields
	// above are zero.
	IfaceAddrV6     netip.Addr
	PublicIPv6      netip.Addr
	PublicIPv6Iface string
}

// TunnelSource is the underlay address that tunnel traffic is sent from and (for the
// userspace backends) received on: PublicIP when an interface of this node holds it, so
// that peers, which admit tunnel traffic only from lease public IPs
// (--restrict-tunnel-port), see the address they know; else IfaceAddr, as flanneld.
func (e ExternalInterface) TunnelSource() netip.Addr {
	if e.PublicIPIface != "" && e.PublicIP.IsValid() {
		return e.PublicIP
	}
	return e.IfaceAddr
}

// TunnelSourceV6 is TunnelSource for the IPv6 underlay.
func (e ExternalInterface) TunnelSourceV6() netip.Addr {
	if e.PublicIPv6Iface != "" && e.PublicIPv6.IsValid() {
		return e.PublicIPv6
	}
	return e.IfaceAddrV6
}

// Env is what a backend is built from.
type Env struct {
	Ext     ExternalInterface
	Network *subnet.Config // the validated network config; Network.Backend holds the raw keys
	Log     klog.Logger
	// OnRepair, if set, is called each time the Network puts back kernel state that someone
	// else changed or deleted, with the kind of state: "device" (re-created, set up, MTU,
	// MAC), "address", "route", "neighbour", "fdb", or "peer" (a peer's entries as a
	// whole). Use Env.Repaired, which is nil-safe.
	OnRepair func(kind string)
}

// Repaired reports a repair of the given kind to OnRepair, if set.
func (e Env) Repaired(kind string) {
	if e.OnRepair != nil {
		e.OnRepair(kind)
	}
}

// Type describes one backend: how to validate its config keys and how to build it.
type Type struct {
	// Name is the Backend.Type value, e.g. "host-gw".
	Name string
	// Validate checks the raw Backend object: bad values give an error naming the key and
	// the value. Unknown keys are not errors (flanneld ignores them): the config check warns
	// about the keys not in Keys. It must not touch the system.
	Validate func(raw json.RawMessage) error
	// Keys are the Backend keys the backend reads besides Type (KeyNames of its config
	// struct).
	Keys []string
	// CheckNetwork, if set, checks the Backend object against the rest of the network
	// config, its address families: a combination the backend cannot run (udp in a network
	// with IPv6) gives an error naming the keys. It must not touch the system. The config
	// check runs it after Validate, so that weftd waits for a config it could not run, as for
	// any invalid one, and weftctl refuses to write it; New checks the same again.
	CheckNetwork func(network *subnet.Config) error
	// New builds the backend. It may check the kernel, but creates nothing yet.
	New func(env Env) (Backend, error)

	// AnyPeerType admits peer leases of every BackendType, as flanneld's udp backend does
	// (its own leases carry none). Otherwise only leases naming Name are peers.
	AnyPeerType bool
	// CheckPeerData, if set, checks a peer lease's BackendData (for vxlan, the VTEP MAC)
	// and says what is wrong with it. A lease it refuses is not admitted as a peer. It must
	// be pure and cheap: it runs once per lease change.
	CheckPeerData func(attrs subnet.LeaseAttrs) error
}

// Admission returns the backend's part of the peer admission rule (subnet.Admission).
func (t Type) Admission() subnet.PeerRule {
	return subnet.PeerRule{BackendType: t.Name, AnyBackendType: t.AnyPeerType, CheckData: t.CheckPeerData}
}

// Backend is a configured backend, before a lease is held.
type Backend interface {
	// Prepare creates or adopts the devices that do not depend on the lease and returns
	// the attributes to publish in it (BackendType and BackendData; the daemon fills in
	// the public addresses). It is idempotent.
	Prepare(ctx context.Context) (subnet.LeaseAttrs, error)
	// Activate brings up the data plane for the node's own lease and returns the running
	// Network. Called once per lease; on a subnet change the old Network is closed first.
	Activate(ctx context.Context, own subnet.Lease) (Network, error)
}

// Network is an active data plane.
//
// Peers: Apply receives only peers admitted by subnet (see subnet.Admission): a subnet of
// the network's length inside Network, overlapping no other peer and not the own subnet, a
// unicast public IP that is not this node's, the BackendType this backend runs and
// BackendData that Type.CheckPeerData accepts. A Network does not judge leases again; a
// lease that turns unusable arrives as Removed.
//
// Concurrency: Apply is called from one goroutine; Run runs concurrently with Apply in
// another. Implementations guard shared peer state with a mutex that Run's repairs share.
// After Close, Run returns and Apply is not called again.
type Network interface {
	// MTU is the MTU pods must use (written to FLANNEL_MTU).
	MTU() int
	// Apply brings the kernel in line with the given peer changes. It is idempotent:
	// an Added event for a known peer with the same attributes changes nothing, and a
	// changed one replaces the old state. A peer that cannot be programmed is logged with
	// its subnet and retried by Run; it never stops the others. The returned error joins
	// the per-peer errors, for logging only.
	Apply(ctx context.Context, events []subnet.Event) error
	// Run does the backend's ongoing work (forwarding for userspace backends, drift
	// repair) until ctx ends, and returns nil then. A non-nil return is fatal.
	Run(ctx context.Context) error
	// Close releases what the process holds (sockets, file descriptors). It leaves the
	// kernel state it can (devices, routes) in place so that pods keep talking across a
	// restart; a device that lives only as long as its file descriptor (udp's flannel0, not
	// persistent so that flanneld can take the node back) goes with it.
	Close() error
}

// Tunnel is implemented by Networks that receive encapsulated traffic on the underlay, so
// that the firewall can admit it from peers (and only from peers, with
// --restrict-tunnel-port). Proto is "udp" (with a port) or "gre".
type Tunnel interface {
	TunnelPort() (proto string, port int)
}

// TunnelV6 is implemented by a Tunnel whose IPv6 traffic arrives on a UDP port of its
// own (wireguard's Mode separate: flannel-wg-v6 on ListenPortV6); 0 means TunnelPort's.
type TunnelV6 interface {
	TunnelPortV6() int
}

// MemoryUser is implemented by Networks whose data plane needs a sizeable heap of its own
// (wireguard-go's packet buffers). weftd's soft memory limit, which otherwise follows the
// peer count, is kept at least at MemoryFloor bytes while the Network runs, so that the
// garbage collector does not run all the time under load.
type MemoryUser interface {
	MemoryFloor() int64
}

// Peer states reported by Describe.
const (
	PeerProgrammed = "programmed" // the peer's state is in place
	PeerError      = "error"      // programming failed; retried by Run
	PeerIgnored    = "ignored"    // not programmed on purpose (e.g. another backend type)
)

// PeerStatus says how one peer is programmed.
type PeerStatus struct {
	State  string // PeerProgrammed, PeerError or PeerIgnored
	Reason string // for errors and ignored peers
}

// Description is what a Network tells an operator about itself (weftctl status).
type Description struct {
	Device string                      // the backend's device, "" for none
	Info   map[string]string           // backend facts, e.g. "vtepMAC", "mode"
	Peers  map[netip.Prefix]PeerStatus // every peer the Network knows
}

// Describer is implemented by Networks that can describe their state. Describe is safe to
// call from any goroutine.
type Describer interface {
	Describe() Description
}

// PacketStats is a snapshot of a userspace data plane's counters; every counter only grows.
type PacketStats struct {
	// Packets and Bytes by direction: "device-in" (read from the TUN, bound for peers),
	// "tunnel-out" (sent to peers), "tunnel-in" (received from the underlay, before any
	// check) and "device-out" (written to the TUN).
	Packets, Bytes map[string]uint64
	// Drops by reason, e.g. "not-peer", "spoofed-inner-source", "malformed".
	Drops map[string]uint64
	// ICMPErrors counts the ICMP errors generated (net unreachable, time exceeded).
	ICMPErrors uint64
}

// PacketCounter is implemented by Networks that forward packets in userspace (udp, gre in
// userspace mode), for metrics and status. PacketStats is safe to call from any goroutine
// at any time, also after Close.
type PacketCounter interface {
	PacketStats() PacketStats
}
