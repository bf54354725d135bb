// Package kernel holds the idempotent netlink helpers that weft's kernel backends (host-gw,
// vxlan, udp, gre) share: ensure and delete routes, neighbours and bridge FDB entries, a
// device's address, the direct-connection test, tx checksum offload, the kernel version,
// and the self-healing loop: a subscription to the kernel's change notifications and a
// Watcher that turns them into reconcile passes.
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
//   - There is one way to program routes, neighbours and bridge FDB entries: a Batch. It
//     checks and writes many entries with at most one dump of each kind (routes,
//     neighbours, FDB) instead of one or two per entry, and writes only what differs,
//     without reading back: the next pass verifies. Backends use one per Apply and per
//     reconcile pass, so that programming N peers costs O(N), not O(N²). Calling an
//     Ensure* again changes nothing (and sends no netlink notification).
//     Handle.EnsureRoute is a Batch of one route, for callers with a single route.
//   - There is one way to list them: the Handle's dump socket, which parses the kernel's
//     messages in place (Batch, Handle.Routes).
//   - Delete* treat "already gone" as success; deleting a known entry needs no dump.
//   - A Batch's Sweep* list a table (from the same dump) and delete exactly the entries
//     the caller's stale function picks: leftovers of peers that left while weftd was
//     not running. Which entries are stale is the backend's decision.
//   - Dumps are retried when the kernel reports that they were interrupted by a concurrent
//     change (netlink.ErrDumpInterrupted); see RetryDump.
//   - Both address families go through the same code: a Batch is of one Family (NewBatch:
//     IPv4; NewFamilyBatch(IPv6) for IPv6), and a backend running both uses one of each
//     per pass; Handle.DeleteRoute, DirectlyConnected, EnsureSoleAddr and AddrsOf take
//     the family from their argument. Routes live in the main table. What differs for
//     IPv6 is the kernel's: a route written without a metric is listed with 1024 (which
//     RouteMatches accepts), a route moved to another device is deleted and re-added when
//     the kernel refuses to replace it, addresses are added nodad and link-local ones are
//     never touched.
//   - A Handle is safe for concurrent use (netlink requests on one socket are serialised);
//     after Close its methods return ErrClosed rather than act in another namespace.
//
// # Self-healing
//
// Handle.Subscribe opens one notification socket in the Handle's namespace (link and
// neighbour groups, and the address and route groups of the families asked for: IPv4 by
// default; FDB entries arrive as AF_BRIDGE neighbours) and delivers each notification of
// those families as a Change, parsed by the pure ParseChange. Lost
// notifications (ENOBUFS) and a broken socket, which is re-opened with back-off, arrive
// as Resync changes. A Watcher debounces the changes a backend finds Relevant into calls
// of its Reconcile, runs a full pass periodically as a safety net, retries failed passes
// and backs off when passes keep finding drift (a fight with another program). A
// backend's Run is then:
//
//	changes, err := h.Subscribe(ctx, kernel.IPv4, kernel.IPv6) // err only for a closed Handle
//	w := kernel.Watcher{Relevant: n.relevant, Reconcile: n.reconcile, Log: log}
//	w.Run(ctx, changes)
//
// Reconcile must write nothing when nothing is wrong; its own writes then cause exactly
// one more pass, which finds nothing, and the loop ends there.
//
// # API at a glance
//
//	h, err := kernel.Open()                        // in the target namespace
//	b := h.NewBatch()                              // one per pass (IPv4)
//	b6 := h.NewFamilyBatch(kernel.IPv6)            // the same for IPv6
//	b.EnsureRoute(r) / b.HasRoute(r) / b.DeleteRoute(dst, linkIndex)
//	b.EnsureNeigh(linkIndex, addr, mac) / HasNeigh / DeleteNeigh(linkIndex, addr)
//	b.EnsureFDB(linkIndex, mac, dst) / HasFDB / DeleteFDB(linkIndex, mac, dst)
//	b.SweepRoutes(linkIndex, stale) / SweepNeighs / SweepFDB // delete what stale picks
//	h.EnsureRoute(r) / h.DeleteRoute(dst, linkIndex) / h.Routes(linkIndex) / h.RoutesOf(linkIndex, family)
//	h.DirectlyConnected(addr, linkIndex)
//	h.EnsureSoleAddr(linkIndex, prefix) / h.Addrs(linkIndex) / h.AddrsOf(linkIndex, family)
//	h.TxChecksum(name) / h.EnsureTxChecksum(name, on)
//	h.Netlink()                                    // links and anything else, same namespace
//	kernel.RouteMatches                            // pure, to check listed routes
//	kernel.RetryDump(fn), kernel.KernelVersion(), kernel.ParseKernelRelease(s)
//	h.Subscribe(ctx, families...) -> <-chan Change; kernel.ParseChange(msg, families...)
//	kernel.Watcher{…}.Run(ctx, changes)
//
// Tests build namespaces, pods and a netlink change counter with package kerneltest.
//
// The package owns no state beyond the sockets in a Handle and decides nothing: which
// routes a peer needs is the backend's business.
package kernel
