package vxlan

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/kernel"
)

// kernelDefaultPort is the VXLAN port Linux uses when none is given (vxlan module
// parameter udp_port), which flanneld relies on.
const kernelDefaultPort = 8472

// deviceSpec is the wanted VXLAN device. It is derived once, in New.
type deviceSpec struct {
	name     string           // flannel.<VNI>
	vni      int              // VXLAN id
	mac      net.HardwareAddr // vtepMAC(PublicIP, VNI)
	mtu      int              // pod MTU
	extIndex int              // underlay link
	local    netip.Addr       // underlay source address (ExternalInterface.TunnelSource)
	port     int              // UDP destination port, never 0
	learning bool
	gbp      bool
	// txCsumOff: switch transmit checksum offload off (see needTxChecksumOff).
	txCsumOff bool
}

// defaultPort returns the vxlan module's default destination port, which a device created
// without one gets.
func defaultPort() int {
	b, err := os.ReadFile("/sys/module/vxlan/parameters/udp_port")
	if err != nil {
		return kernelDefaultPort
	}
	p, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || p <= 0 || p > maxPort {
		return kernelDefaultPort
	}
	return p
}

// link returns the netlink description used to create the device.
func (s deviceSpec) link() *netlink.Vxlan {
	return &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{
			Name:         s.name,
			MTU:          s.mtu,
			HardwareAddr: s.mac,
		},
		VxlanId:      s.vni,
		VtepDevIndex: s.extIndex,
		SrcAddr:      net.IP(s.local.AsSlice()),
		Port:         s.port,
		Learning:     s.learning,
		GBP:          s.gbp,
	}
}

// incompatible says why an existing link cannot be adopted as the device s describes, or
// returns "" when it can (MAC, MTU and up state are then corrected in place). It is pure.
func incompatible(s deviceSpec, l netlink.Link) string {
	v, ok := l.(*netlink.Vxlan)
	if !ok {
		return fmt.Sprintf("link type is %q, not vxlan", l.Type())
	}
	var diffs []string
	diff := func(what string, have, want any) {
		diffs = append(diffs, fmt.Sprintf("%s %v (want %v)", what, have, want))
	}
	if v.VxlanId != s.vni {
		diff("vni", v.VxlanId, s.vni)
	}
	if v.VtepDevIndex != s.extIndex {
		diff("dev index", v.VtepDevIndex, s.extIndex)
	}
	if local, _ := netip.AddrFromSlice(v.SrcAddr); local.Unmap() != s.local {
		diff("local", v.SrcAddr, s.local)
	}
	if v.Port != s.port {
		diff("dstport", v.Port, s.port)
	}
	if v.Learning != s.learning {
		diff("learning", v.Learning, s.learning)
	}
	if v.GBP != s.gbp {
		diff("gbp", v.GBP, s.gbp)
	}
	if len(v.Group) != 0 && !v.Group.IsUnspecified() {
		diff("group", v.Group, "none")
	}
	if v.L2miss || v.L3miss {
		diff("l2miss/l3miss", v.L2miss || v.L3miss, false)
	}
	if v.FlowBased {
		diff("external", true, false)
	}
	return strings.Join(diffs, ", ")
}

// ensureDevice creates, adopts or re-creates the device, then corrects its MAC, MTU, up
// state and checksum offload. It returns the link index and whether it wrote anything.
// With nothing to correct it writes nothing.
func ensureDevice(h *kernel.Handle, s deviceSpec, up bool, log klog.Logger) (idx int, changed bool, err error) {
	l, created, changed, err := h.EnsureLink(kernel.LinkSpec{
		Name: s.name, Kind: "VXLAN", MTU: s.mtu, Up: up,
		New:          func() netlink.Link { return s.link() },
		Incompatible: func(l netlink.Link) string { return incompatible(s, l) },
		CreateError: func(err error) error {
			return fmt.Errorf("create vxlan device %s (vni %d, local %s, dstport %d): %w", s.name, s.vni, s.local, s.port, err)
		},
	}, log)
	if err != nil {
		return 0, changed, err
	}
	if created {
		log.Info("Created VXLAN device", "device", s.name, "vni", s.vni, "local", s.local,
			"dstport", s.port, "mac", s.mac, "mtu", s.mtu)
	}
	a := l.Attrs()
	if !bytes.Equal(a.HardwareAddr, s.mac) {
		changed = true
		if err := h.Netlink().LinkSetHardwareAddr(l, s.mac); err != nil {
			return 0, changed, fmt.Errorf("set MAC of %s to %s: %w", s.name, s.mac, err)
		}
		log.Info("Restored VXLAN device MAC", "device", s.name, "was", a.HardwareAddr, "mac", s.mac)
	}
	if s.txCsumOff {
		csum, err := h.EnsureTxChecksum(s.name, false)
		changed = changed || csum
		if err != nil {
			return 0, changed, err
		}
		if csum {
			log.Info("Switched off tx checksum offload on the VXLAN device (kernel before 5.7 or ChecksumOffload=false)", "device", s.name)
		}
	}
	return a.Index, changed, nil
}
