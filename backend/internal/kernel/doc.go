// Package kernel holds the idempotent netlink helpers that weft's kernel backends (host-gw,
// vxlan) share: ensure and delete routes, neighbours and bridge FDB entries, a device's
// address, the direct-connection test, tx checksum offload, and the kernel version.
//
// # Namespaces
//
// Every operation goes through a Handle, whose netlink and ioctl sockets are opened by Open
// in the network namespace of the calling thread. The sockets stay in that namespace, so a
// Handle may then be used from any goroutine on any thread: a backend built inside
// nsutil.Do in a test keeps acting inside that namespace when its Run goroutine starts
// outside it. Nothing in this package uses netlink's package-level functions, which act in
// whatever namespace the current thread happens to be in.
//
// # Contract of the helpers
//
//   - Ensure* first reads what is there and writes only when it differs, so calling it
//     again changes nothing (and sends no netlink notification). After a write it reads back
//     and returns an error wrapping ErrNotApplied if the kernel does not show the wanted
//     state.
//   - Delete* treat "already gone" as success.
//   - Dumps are retried when the kernel reports that they were interrupted by a concurrent
//     change (netlink.ErrDumpInterrupted); see RetryDump.
//   - Routes live in the main table unless Route.Table says otherwise; only IPv4 is handled.
//   - A Handle is safe for concurrent use (netlink requests on one socket are serialised);
//     after Close its methods return ErrClosed rather than act in another namespace.
//
// # API at a glance
//
//	h, err := kernel.Open()                        // in the target namespace
//	h.EnsureRoute(r) / h.DeleteRoute(dst, linkIndex) / h.Routes(linkIndex)
//	h.DirectlyConnected(addr, linkIndex)
//	h.EnsureNeigh(linkIndex, addr, mac) / h.DeleteNeigh(linkIndex, addr) / h.Neighs(linkIndex)
//	h.EnsureFDB(linkIndex, mac, dst) / h.DeleteFDB(linkIndex, mac, dst) / h.FDB(linkIndex)
//	h.EnsureSoleAddr(linkIndex, prefix) / h.Addrs(linkIndex)
//	h.TxChecksum(name) / h.EnsureTxChecksum(name, on)
//	h.Netlink()                                    // links and anything else, same namespace
//	kernel.RouteMatches / NeighMatches / FDBMatches // pure, to check many entries per dump
//	kernel.RetryDump(fn), kernel.KernelVersion(), kernel.ParseKernelRelease(s)
//
// Tests build namespaces, pods and a netlink change counter with package kerneltest.
//
// The package owns no state beyond the sockets in a Handle and decides nothing: which
// routes a peer needs is the backend's business.
package kernel
