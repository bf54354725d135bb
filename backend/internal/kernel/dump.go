package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpSocket lists IPv4 and IPv6 routes, neighbours and FDB entries for a Batch by parsing the
// kernel's messages where they land in one reused buffer: netlink's own lists cost a
// struct of hundreds of bytes and several allocations per entry, megabytes of garbage
// per pass with thousands of peers. It is a NETLINK_ROUTE socket of the Handle's
// namespace, opened with it.
type dumpSocket struct {
	mu  sync.Mutex // serialises dumps; guards seq and buf
	fd  int
	seq uint32
	buf []byte // receive buffer, allocated on the first dump
}

// dumpBuffer holds one datagram of a dump; the kernel fills at most 32 KiB per datagram.
const dumpBuffer = 64 << 10

func openDumpSocket() (*dumpSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink dump socket: %w", err)
	}
	tv := unix.NsecToTimeval(socketTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set rtnetlink dump socket timeout: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind rtnetlink dump socket: %w", err)
	}
	return &dumpSocket{fd: fd}, nil
}

func (s *dumpSocket) close() error { return unix.Close(s.fd) }

// dump sends a dump request of type typ with the fixed header hdr and calls fn with the
// body (header and attributes) of each answer, which is only valid during the call. The
// error wraps netlink.ErrDumpInterrupted when the kernel marks the dump interrupted by a
// concurrent change (RetryDump retries those).
func (s *dumpSocket) dump(typ uint16, hdr []byte, fn func(msgType uint16, body []byte)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buf == nil {
		s.buf = make([]byte, dumpBuffer)
	}
	s.seq++
	ne := binary.NativeEndian
	req := make([]byte, unix.NLMSG_HDRLEN+len(hdr))
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], typ)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], s.seq)
	copy(req[unix.NLMSG_HDRLEN:], hdr)
	if err := unix.Sendto(s.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink dump request: %w", err)
	}
	interrupted := false
	for {
		n, _, err := unix.Recvfrom(s.fd, s.buf, unix.MSG_TRUNC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink dump: %w", err)
		}
		if n > len(s.buf) {
			return fmt.Errorf("netlink dump: a %d-byte message does not fit the %d-byte buffer", n, len(s.buf))
		}
		for b := s.buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(ne.Uint32(b))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return errors.New("netlink dump: malformed message")
			}
			mtype, flags, seq := ne.Uint16(b[4:]), ne.Uint16(b[6:]), ne.Uint32(b[8:])
			body := b[unix.NLMSG_HDRLEN:l]
			b = b[min(len(b), (l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)):]
			if seq != s.seq {
				continue // the rest of an earlier dump that timed out
			}
			if flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch mtype {
			case unix.NLMSG_DONE:
				if len(body) >= 4 {
					if e := int32(ne.Uint32(body)); e < 0 {
						return fmt.Errorf("netlink dump: %w", syscall.Errno(-e))
					}
				}
				if interrupted {
					return netlink.ErrDumpInterrupted
				}
				return nil
			case unix.NLMSG_ERROR:
				if len(body) >= 4 {
					if e := int32(ne.Uint32(body)); e < 0 {
						return fmt.Errorf("netlink dump: %w", syscall.Errno(-e))
					}
				}
			default:
				fn(mtype, body)
			}
		}
	}
}

// neighEntry is a listed neighbour or FDB entry, as much as a Batch needs.
type neighEntry struct {
	ip    netip.Addr // NDA_DST: the neighbour's address, or the FDB entry's remote
	mac   string     // NDA_LLADDR
	state uint16
	flags uint8
	vlan  uint16 // NDA_VLAN, 0 when absent
	vni   uint32 // NDA_VNI, 0 when absent
}

// neighbours lists the entries of family (AF_INET, AF_INET6: neighbours; AF_BRIDGE: FDB
// entries) on link, skipping others.
func (s *dumpSocket) neighbours(family uint8, link int, fn func(neighEntry)) error {
	ne := binary.NativeEndian
	hdr := make([]byte, unix.SizeofNdMsg)
	hdr[0] = family
	return s.dump(unix.RTM_GETNEIGH, hdr, func(typ uint16, b []byte) {
		if typ != unix.RTM_NEWNEIGH || len(b) < unix.SizeofNdMsg || b[0] != family || int(int32(ne.Uint32(b[4:]))) != link {
			return
		}
		e := neighEntry{state: ne.Uint16(b[8:]), flags: b[10]}
		eachAttr(b[unix.SizeofNdMsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.NDA_DST:
				if a, ok := netip.AddrFromSlice(v); ok {
					e.ip = a.Unmap()
				}
			case unix.NDA_LLADDR:
				e.mac = string(v)
			case unix.NDA_VLAN:
				if len(v) >= 2 {
					e.vlan = ne.Uint16(v)
				}
			case unix.NDA_VNI:
				if len(v) >= 4 {
					e.vni = ne.Uint32(v)
				}
			}
		})
		fn(e)
	})
}

// mainRoutes lists the routes of family f in the main table (not cached clones), as
// routeEntries, with the RTA_MULTIPATH attribute of a multipath route (nil for others;
// valid during the call only). Default routes are not listed.
func (s *dumpSocket) mainRoutes(f Family, fn func(e routeEntry, nexthops []byte)) error {
	ne := binary.NativeEndian
	hdr := make([]byte, unix.SizeofRtMsg)
	hdr[0] = uint8(f)
	return s.dump(unix.RTM_GETROUTE, hdr, func(typ uint16, b []byte) {
		if typ != unix.RTM_NEWROUTE || len(b) < unix.SizeofRtMsg || b[0] != uint8(f) || int(b[1]) > f.bits() {
			return
		}
		flags := ne.Uint32(b[8:])
		if flags&unix.RTM_F_CLONED != 0 {
			return
		}
		e := routeEntry{tos: int(b[3]), table: int(b[4]), protocol: netlink.RouteProtocol(b[5]),
			scope: netlink.Scope(b[6]), typ: int(b[7]), flags: int(flags)}
		dstLen := int(b[1])
		var dst netip.Addr // stays invalid for a default route (no RTA_DST), which is skipped
		var nexthops []byte
		eachAttr(b[unix.SizeofRtMsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.RTA_DST:
				dst = f.addr(v)
			case unix.RTA_GATEWAY:
				e.gw = f.addr(v)
			case unix.RTA_PREFSRC:
				e.src = f.addr(v)
			case unix.RTA_OIF:
				if len(v) >= 4 {
					e.link = int(int32(ne.Uint32(v)))
				}
			case unix.RTA_PRIORITY:
				if len(v) >= 4 {
					e.priority = int(ne.Uint32(v))
				}
			case unix.RTA_TABLE:
				if len(v) >= 4 {
					e.table = int(ne.Uint32(v))
				}
			case unix.RTA_MULTIPATH:
				e.multipath, nexthops = true, v
			}
		})
		if e.table != unix.RT_TABLE_MAIN || !dst.IsValid() {
			return
		}
		e.dst = netip.PrefixFrom(dst, dstLen)
		fn(e, nexthops)
	})
}

// parseNexthops parses an RTA_MULTIPATH attribute of a route of family f: rtnexthop
// headers (length, flags, hops, ifindex), each followed by its attributes (the gateway).
// It stops at anything malformed.
func parseNexthops(f Family, b []byte) []*netlink.NexthopInfo {
	const sizeofRtNexthop = 8
	ne := binary.NativeEndian
	var nhs []*netlink.NexthopInfo
	for len(b) >= sizeofRtNexthop {
		l := int(ne.Uint16(b))
		if l < sizeofRtNexthop || l > len(b) {
			break
		}
		nh := &netlink.NexthopInfo{Flags: int(b[2]), Hops: int(b[3]), LinkIndex: int(int32(ne.Uint32(b[4:])))}
		eachAttr(b[sizeofRtNexthop:l], func(typ uint16, v []byte) {
			if typ == unix.RTA_GATEWAY {
				if gw := f.addr(v); gw.IsValid() {
					nh.Gw = net.IP(gw.AsSlice())
				}
			}
		})
		nhs = append(nhs, nh)
		b = b[min(len(b), (l+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1)):]
	}
	return nhs
}
