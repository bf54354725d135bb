package tundev

import (
	"fmt"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ipv4DevconfAcceptLocal is IPV4_DEVCONF_ACCEPT_LOCAL (include/uapi/linux/ip.h).
const ipv4DevconfAcceptLocal = 23

// AllowLocalSource sets accept_local on the device dev, in the network namespace of the
// calling thread. The forwarder writes ICMP errors into the TUN from the device's own
// address (the own subnet's network address, as flanneld does); without accept_local the
// kernel drops such packets as martians. errPrefix starts the error message.
//
// It sets it over netlink (the device's IPv4 devconf), which needs CAP_NET_ADMIN only: in a
// pod /proc/sys is mounted read-only, and writing it there fails. /proc/sys is the fallback
// for a kernel that refuses the netlink request.
func AllowLocalSource(dev, errPrefix string) error {
	path := "/proc/sys/net/ipv4/conf/" + dev + "/accept_local"
	cur, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(cur)) == "1" {
		return nil
	}
	nlErr := setAcceptLocal(dev)
	if nlErr == nil {
		return nil
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("%s: enable accept_local on %s (for ICMP errors from its address): over netlink: %v; in %s: %w",
			errPrefix, dev, nlErr, path, err)
	}
	return nil
}

// setAcceptLocal sets the device's IPv4 devconf accept_local to 1 with RTM_SETLINK
// (IFLA_AF_SPEC / AF_INET / IFLA_INET_CONF), in the calling thread's namespace.
func setAcceptLocal(dev string) error {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return err
	}
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(link.Attrs().Index)
	req.AddData(msg)
	af := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
	conf := af.AddRtAttr(unix.AF_INET, nil).AddRtAttr(unix.IFLA_INET_CONF, nil)
	conf.AddRtAttr(ipv4DevconfAcceptLocal, nl.Uint32Attr(1))
	req.AddData(af)
	_, err = req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
