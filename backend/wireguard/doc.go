// Package wireguard is weft's wireguard backend: pods' packets travel between nodes
// encrypted and authenticated by WireGuard, either in the kernel's WireGuard module or,
// where the kernel has none, in wireguard-go over a TUN device. Both speak the same
// protocol with the same keys, so nodes of either kind — and flanneld's own wireguard
// backend, which needs the kernel module — form one mesh.
//
// # What it sets up (flanneld's layout)
//
// One device, flannel-wg, with the own subnet's network address as a /32 and one route,
// the whole Network, through it. The device listens on UDP ListenPort (51820) on every
// address. For each peer lease (BackendType "wireguard") one WireGuard peer:
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
// "kernel" fails instead with a *KernelWireGuardError; "userspace" never probes. A
// flannel-wg of the other implementation, left by an earlier run, is deleted.
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
// ("separate", "auto", "ipv4", "ipv6"). In an IPv4 network the first three are the same
// here, and "ipv6" (IPv6 endpoints) is refused by New (but accepted by Validate, so a
// config shared with flanneld nodes stays valid).
//
// # Dual stack
//
// With EnableIPv6 (and IPv4), in Mode "auto" or "ipv4", as flanneld in those modes: the
// one device flannel-wg also gets the own IPv6 subnet's network address as a /128 and a
// route to the IPv6Network (metric 1024); each peer's allowed IPs are its IPv4 and its
// IPv6 subnet; the lease's BackendV6Data carries the same {"PublicKey": ...} as its
// BackendData. The endpoint is the peer's PublicIP in Mode ipv4; in Mode auto it is
// flanneld's choice (selectEndpoint): the IPv4 address unless it is private and both
// nodes have a public IPv6 one. Refused by New, naming the keys: Mode "separate"
// (flanneld's default: a second device flannel-wg-v6 on ListenPortV6) or "ipv6" with
// EnableIPv6, and IPv6-only networks (EnableIPv4=false) — use vxlan, host-gw or gre
// there. The IPv6 address and route are watched and put back as the IPv4 ones are.
//
// # Self-healing
//
// Run puts back, within a few tens of milliseconds of the kernel's notification, the
// device's link state, MTU, address and route; a deleted device is re-created in place
// with its key, port and peers (userspace: wireguard-go stops when its TUN goes away,
// which triggers the same repair). Peers changed by hand (kernel: `wg set`) are put back
// at the next peer check, every 500 ms in kernel mode; userspace devices have no control
// socket, so only weftd changes them. An endpoint that WireGuard moved to where a peer's
// authenticated packets come from (roaming) is not drift. Each repair is logged and
// counted (backend.Env.Repaired: "device", "address", "route", "peer").
//
// # MTU
//
// flanneld's: the external interface's MTU − 80 (outer IPv4/IPv6 header, UDP 8, WireGuard
// 32), or the MTU key when set (not larger than that).
//
// # What it must not do
//
// It never talks to the subnet store, never logs or publishes the private key, and leaves
// the device, its address, route and kernel peers in place on Close.
package wireguard
