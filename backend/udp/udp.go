// Package udp is flanneld's udp backend for weft: pods' packets leave through the TUN
// device flannel0, and a userspace forwarder (backend/internal/fastpath) carries each one
// as the payload of a UDP datagram to the peer node holding the destination, on port 8285.
// It interoperates byte for byte with flanneld's udp backend: same device name, address
// (own subnet network address /32), route (the whole Network via flannel0), MTU
// (interface − 28), port, wire format (the UDP payload is exactly the inner IPv4 packet,
// TTL decremented) and lease value (no BackendType).
//
// flannel0 is not persistent, as flanneld's is not: it exists while weftd holds its queue
// and goes away, with its address and route, when weftd stops however it stops (Close,
// SIGTERM, SIGKILL). This is what lets flanneld take a node back: flanneld opens its TUN
// as "flannel%d", which the kernel resolves to flannel0 only while no flannel0 exists; a
// flannel0 left behind sends flanneld to flannel1, while the route to the Network stays
// on the orphaned flannel0 (flanneld ignores the EEXIST of its own route), and the node
// carries no pod traffic. The cost: while weftd restarts, the route to the Network is
// gone for the tens of milliseconds that forwarding is down anyway, so packets for other
// nodes' pods follow the node's other routes (its default route) instead of being dropped
// at flannel0, as on a restart of flanneld. A persistent flannel0 left by an earlier weftd
// is adopted and made non-persistent (logged).
//
// Where weft does better than flanneld:
//   - Datagrams are accepted only from a current peer's PublicIP:Port, and only when the
//     inner source lies in that peer's subnet and the inner destination in the own subnet;
//     everything else is dropped and counted by reason (see Stats).
//   - ICMP errors (net unreachable, time exceeded) follow RFC 1812, including about ICMP
//     echo, which flanneld never answers.
//   - Many packets move per system call (recvmmsg/sendmmsg), unless Backend.Batch is false;
//     with batching, flannel0 and the socket also use kernel offloads where the kernel
//     offers them: TCP superpackets from flannel0 are cut in userspace (TSO), sent with UDP
//     GSO, received with UDP GRO and written back coalesced (GRO). The wire format stays
//     one inner packet per datagram.
//   - Run puts back flannel0's link state, MTU, address and route within a few tens of
//     milliseconds of a change by someone else (kernel change notifications, and a full
//     check every 30 s). A deleted flannel0 is re-created in place, with the same options,
//     address and route, as soon as the forwarder's queue reports it gone; forwarding
//     resumes without a restart.
//
// Caveat of the stricter check: a peer's datagrams must come from its lease's PublicIP and
// the configured port. A NAT between nodes that rewrites either makes that peer's traffic
// count as not-peer, where flanneld would accept it. The socket is bound to
// backend.ExternalInterface.TunnelSource: the public IP when an interface of the node
// holds it (so that a weft peer sees the datagrams come from the lease's address, and
// datagrams sent to it arrive), else the interface address, as flanneld's.
//
// IPv4 only: like flanneld's udp backend, it carries IPv4 and New refuses a network that
// runs IPv6 (EnableIPv6, or EnableIPv4=false), naming the backends that carry IPv6 (vxlan,
// host-gw, gre, wireguard); so does the config check (Type.CheckNetwork). See checkFamilies
// for why.
//
// The package owns flannel0 and its configuration; it does not talk to the subnet store
// and does not judge peer leases (the daemon admits them, see backend.Network). Like
// flanneld's udp backend it takes peers of any BackendType (Type sets AnyPeerType) and
// logs those that name another backend, as such a node may not speak udp.
package udp

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/dgram"
	"github.com/weftnet/weft/backend/internal/fastpath/tun"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/tundev"
	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/subnet"
)

// Name is the Backend.Type value. Leases of this backend carry no BackendType, as
// flanneld's udp backend writes none.
const Name = "udp"

// The daemon reads a udp Network's counters with a type assertion to StatsReporter. The
// aliases make the fast path's types reachable outside backend/.
type (
	// StatsReporter is implemented by the Network that Activate returns.
	StatsReporter = fastpath.StatsReporter
	// Stats is a snapshot of the forwarding counters.
	Stats = fastpath.Stats
	// Counter counts packets and bytes.
	Counter = fastpath.Counter
	// DropReason indexes Stats.Drops; its String is the reason's stable name.
	DropReason = fastpath.DropReason
)

// NumDropReasons is the length of Stats.Drops.
const NumDropReasons = fastpath.NumDropReasons

// Type returns the udp backend's entry for the daemon's table.
func Type() backend.Type {
	return backend.Type{Name: Name, Validate: Validate, CheckNetwork: checkFamilies, New: New, AnyPeerType: true, Keys: backend.KeyNames(&Config{})}
}

type udpBackend struct {
	env backend.Env
	cfg Config
	mtu int
	log klog.Logger
}

var _ backend.Backend = (*udpBackend)(nil)

// New checks the config and the kernel (a TUN driver must exist) and returns the backend.
// It creates nothing.
func New(env backend.Env) (backend.Backend, error) {
	if env.Network == nil {
		return nil, fmt.Errorf("udp backend: no network config")
	}
	if err := checkFamilies(env.Network); err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(env.Network.Backend)
	if err != nil {
		return nil, err
	}
	if err := tun.Check(); err != nil {
		return nil, fmt.Errorf("udp backend needs a TUN device: %w", err)
	}
	if env.Ext.Iface == nil || !env.Ext.IfaceAddr.Is4() {
		return nil, fmt.Errorf("udp backend: the external interface has no IPv4 address to bind port %d to", cfg.Port)
	}
	mtu, err := podMTU(env.Ext.Iface.MTU)
	if err != nil {
		return nil, err
	}
	return &udpBackend{env: env, cfg: cfg, mtu: mtu, log: env.Log.WithValues("backend", Name)}, nil
}

// checkFamilies refuses a network that runs IPv6: udp carries IPv4 only. flanneld's udp
// backend is IPv4-only (its wire format is the bare inner IPv4 packet, its TUN route the
// IPv4 Network), so an IPv6 format of weft's own could not be spoken by flanneld nodes in
// a mixed cluster; the kernel backends carry IPv6 instead. The error names the config
// keys and wraps subnet.ErrInvalidConfig.
func checkFamilies(cfg *subnet.Config) error {
	const use = "use the vxlan, host-gw, gre or wireguard backend, which carry IPv6"
	switch {
	case cfg.EnableIPv6 && !cfg.EnableIPv4:
		return fmt.Errorf("%w: the udp backend carries IPv4 only, as flanneld's: the network config sets EnableIPv4=false and EnableIPv6=true (an IPv6-only network); %s",
			subnet.ErrInvalidConfig, use)
	case cfg.EnableIPv6:
		return fmt.Errorf("%w: the udp backend carries IPv4 only, as flanneld's: the network config sets EnableIPv6=true; %s, or remove EnableIPv6",
			subnet.ErrInvalidConfig, use)
	}
	return nil
}

// Prepare creates nothing: flannel0 is not persistent, so it is made in Activate with the
// queue that forwards on it (see the package comment). The lease attributes it returns are
// empty: flanneld's udp leases have no BackendType.
func (b *udpBackend) Prepare(context.Context) (subnet.LeaseAttrs, error) {
	return subnet.LeaseAttrs{}, nil
}

// Activate creates flannel0 (or adopts it, making it non-persistent if an earlier weftd
// left it persistent) by attaching to it, gives it the own subnet's network address and
// the route to the Network, binds the UDP socket and returns the Network, which forwards
// once Run is called.
func (b *udpBackend) Activate(_ context.Context, own subnet.Lease) (backend.Network, error) {
	network := b.env.Network.Network
	if !own.Subnet.Addr().Is4() || !ip.IsNetworkAddress(own.Subnet) || !ip.Contains(network, own.Subnet) {
		return nil, fmt.Errorf("udp backend: own subnet %s is not an IPv4 subnet of %s", own.Subnet, network)
	}
	batch := 1
	if b.cfg.Batch {
		batch = fastpath.OffloadBatchSize
	}
	h, err := kernel.Open()
	if err != nil {
		return nil, fmt.Errorf("udp backend: %w", err)
	}
	n, err := b.activate(h, own.Subnet, network, batch)
	if err != nil {
		h.Close()
		return nil, err
	}
	b.log.Info("udp backend active", "device", DeviceName, "subnet", own.Subnet, "network", network,
		"mtu", b.mtu, "listen", n.listen, "batch", batch, "offloads", n.plane.Forwarder().Offloads())
	return n, nil
}

func (b *udpBackend) activate(h *kernel.Handle, own, network netip.Prefix, batch int) (*udpNetwork, error) {
	// Offloads (TSO/GRO on the TUN, GSO/GRO on the socket) go with batching; Batch false
	// stays one packet per system call.
	offload := batch > 1
	tunOpts := tun.Options{Persist: false, Batch: batch, Offload: offload, Log: b.log}
	dev, queue, err := tundev.Open(h, tundev.Device{Name: DeviceName, ErrPrefix: errPrefix, Own: own, Network: network, MTU: b.mtu}, tunOpts, b.log)
	if err != nil {
		return nil, err
	}
	listen := netip.AddrPortFrom(b.env.Ext.TunnelSource(), uint16(b.cfg.Port))
	sock, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(listen))
	if err != nil {
		queue.Close()
		return nil, fmt.Errorf("udp backend: listen on %s: %w", listen, err)
	}
	setSocketBuffers(sock, b.log)
	conn, err := dgram.NewWith(sock, dgram.Options{Batch: batch, Offload: offload, Log: b.log})
	if err != nil {
		queue.Close()
		sock.Close()
		return nil, fmt.Errorf("udp backend: %w", err)
	}
	plane, err := tundev.NewPlane(tundev.PlaneConfig{
		Device:     dev,
		Handle:     h,
		Queue:      queue,
		TUNOptions: tunOpts,
		Conn:       conn,
		Resync:     resyncPeriod,
		Repaired:   b.env.Repaired,
		Log:        b.log,
	})
	if err != nil {
		return nil, err
	}
	n := &udpNetwork{
		log:    b.log,
		plane:  plane,
		listen: listen,
		peers:  newPeerSet(uint16(b.cfg.Port)),
	}
	return n, nil
}
