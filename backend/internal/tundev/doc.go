// Package tundev configures a userspace backend's TUN device and puts it back when someone
// changes or deletes it. The udp, gre (userspace mode) and wireguard backends share it.
//
// A Device is the configuration the TUN must have while a Network is active: up, the
// backend's MTU, the own subnet's network address as its only address (a /32, as flanneld
// assigns it, which creates no connected or broadcast routes) and one route, the whole
// Network. A Device without Own (an IPv6-only network) carries no IPv4: it keeps no IPv4
// address or route. With Own6 (a network with IPv6) it has an IPv6 side too: the own IPv6
// subnet's network address as its only global IPv6 address (a /128) and one IPv6 route,
// the whole IPv6Network with metric 1024, as flanneld's ConfigureV6 sets them; a Device
// without Own6 leaves IPv6 alone. gre's userspace TUN and the wireguard devices keep both
// sides here. Create makes or adopts a persistent device (gre's weft-gre0, which outlives
// weftd); Open makes or adopts a device together with the queue that forwards on it, the
// way to one that is not persistent (udp's flannel0, which must go away with weftd so that
// flanneld can take the node over); Ensure writes what differs, Drift reports what differs
// without writing, and Reopen re-creates a deleted device with the options its queue was
// first opened with.
//
// Link settings go through a kernel.Handle. Opening the TUN and writing its sysctl happen
// in the calling thread's network namespace (Create, Activate, AllowLocalSource), which
// must be the Handle's, or inside the Handle's namespace (Reopen). Errors start with the
// Device's ErrPrefix (for example "udp backend"), so each backend keeps its wording.
//
// A Plane is the running data plane built on a Device: the forward.Forwarder between the
// TUN and the backend's socket, the repair of the device on the kernel's change
// notifications (kernel.Watcher), and its re-creation through the Forwarder's Reopen.
package tundev
