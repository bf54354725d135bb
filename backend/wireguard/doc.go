// Package wireguard is weft's wireguard backend: pods' packets travel between nodes
// encrypted and authenticated by WireGuard, either in the kernel's WireGuard module or,
// where the kernel has none, in wireguard-go over a TUN device. Both speak the same
// protocol with the same keys, so nodes of either kind — and flanneld's own wireguard
// backend, which needs the kernel module — form one mesh.
//
// # What it sets up (flanneld's layout)
//
// In an IPv4 network, one device, flannel-wg, with the own subnet's network address as a
// /32 and one route, the whole Network, through it. The device listens on UDP ListenPort
// (51820) on every address. For each peer lease (BackendType "wireguard") one WireGuard
// peer:
//
//	public key   the lease's BackendData {"PublicKey":"<base64>"}, as flanneld writes it
//	endpoint     the lease's PublicIP : ListenPort (every node uses the same port)
//	allowed IPs  the lease's subnet
//
// plus the PSK and PersistentKeepaliveInterval of the config. WireGuard routes by key:
// leases that share a key at one endpoint (a node's stale lease beside its new one) make
// one peer with both subnets; a key seen at two endpoints (a copied key file) or this
// node's own key is refused for all but the first lease, shown as a peer error.
//
// # Keys
//
// The private key lives in /run/flannel/wgkey, or in $WIREGUARD_KEY_FILE, as flanneld
// keeps it: base64, no newline. It is generated on first start (mode 0600, written
// atomically) and kept across restarts; a key file that group or others may access is
// refused. The key is held in a type that formats as "(private key)", so logs, errors,
// /status and metrics cannot show it; only the device configuration sees its bytes. The
// lease publishes the public key only. Deleting the file and restarting weftd rotates
// the key: the new lease carries the new public key, and every other node replaces the
// peer within a second.
//
// # Implementations
//
// Implementation "auto" (the default) uses the kernel's WireGuard where the kernel can
// make a "wireguard" link (probed with a throwaway link unless flannel-wg is one already),
// and otherwise logs once that WireGuard runs in userspace and why, and does.
// "kernel" fails instead with an error matching ErrNoKernelWireGuard; "userspace" never
// probes. The decision and that error are package kernelmode's, shared with gre's Mode
// key. A flannel-wg of the other implementation, left by an earlier run, is deleted.
//
// Kernel: a "wireguard" link programmed through wgctrl (generic netlink). Close leaves
// the link, its peers and sessions in place, so traffic does not stop while weftd
// restarts; the next run adopts them and corrects the peers after its first Apply.
//
// Userspace: a persistent TUN (TUNSETPERSIST), so the device, its address and route
// survive a restart of weftd; wireguard-go (golang.zx2c4.com/wireguard) serves it with
// its own TUN offloads (virtio-net header, TSO/GRO) and batched UDP I/O. Its sockets are
// opened in the Network's namespace whichever thread asks (nsBind). After a restart the
// new device has no sessions, so it starts a handshake with every peer at once instead
// of waiting for traffic, and peers that only send get through within a round trip.
//
// The key Implementation is weft's; Mode is flanneld's address-family mode
// ("separate", "auto", "ipv4", "ipv6"). In an IPv4 network the first three are the same,
// and "ipv6" is refused by the config check (Type.CheckNetwork, so weftd waits for
// another config) and by New: weft learns no IPv6 address of the node there.
//
// # IPv6: the devices of each Mode (layout)
//
// With EnableIPv6, as flanneld. Mode "separate" (the default): one device per family the
// network runs — flannel-wg as above for IPv4, and flannel-wg-v6 with the own IPv6
// subnet's network address as a /128, a route to the IPv6Network (metric 1024), UDP
// ListenPortV6 (51821), and per peer endpoint [PublicIPv6]:ListenPortV6, allowed IPs the
// lease's IPv6 subnet; in an IPv6-only network flannel-wg-v6 alone. Modes "auto", "ipv4"
// and "ipv6": one device flannel-wg on ListenPort carrying every family the network runs
// (both subnets per peer in dual stack), sending to PublicIP (ipv4), [PublicIPv6] (ipv6)
// or flanneld's choice (auto, selectEndpoint: the IPv4 address unless it is private and
// both nodes have a public IPv6 one, or the lease has none). Mode "ipv4" in an IPv6-only
// network is refused the same way, naming the key and value. Both devices use the one key, so
// the lease's BackendData (with IPv4) and BackendV6Data carry the same
// {"PublicKey": ...}. A device of weft's names that the layout does not use, left by an
// earlier run, is deleted by Prepare.
//
// Each device is a wgLink with its own engine (kernel link or wireguard-go on its own
// persistent TUN), lock, peers, handshake settling and repair loop; wgNetwork composes
// them and fans Apply, Run, Close and Describe out. TunnelPort is the first device's
// port: ListenPort, or ListenPortV6 where flannel-wg-v6 is alone; in Mode separate with
// both families TunnelPortV6 gives the firewall's IPv6 rules ListenPortV6.
//
// # Self-healing
//
// Run puts back, within a few tens of milliseconds of the kernel's notification, each
// device's link state, MTU, addresses and routes; a deleted device is re-created in place
// with its key, port and peers (userspace: wireguard-go stops when its TUN goes away,
// which triggers the same repair). Peers changed by hand (`wg set`) are put back at the
// next peer check, every 500 ms in kernel mode, and in userspace as soon as the
// connection to the device's configuration socket ends: weftd serves it at
// /var/run/wireguard/<device>.sock (or $WEFT_WIREGUARD_SOCKET_DIR), as wireguard-go's
// own binary does, so that `wg show` sees userspace devices too (uapisock.go). An
// endpoint that WireGuard moved to where a peer's authenticated packets come from
// (roaming) is not drift. Each repair is logged and counted (backend.Env.Repaired:
// "device", "address", "route", "peer").
//
// # MTU
//
// flanneld's: the external interface's MTU − 80 (outer IPv4/IPv6 header, UDP 8, WireGuard
// 32), or the MTU key when set (not larger than that).
//
// # What it must not do
//
// It never talks to the subnet store, never logs or publishes the private key, and leaves
// the devices, their addresses, routes and kernel peers in place on Close.
package wireguard
