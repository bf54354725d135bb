package kernel

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2"
)

// LinkSpec is a device a backend keeps with EnsureLink.
type LinkSpec struct {
	Name string
	Kind string // for the log: "VXLAN", "GRE"
	// New returns the link to create.
	New func() netlink.Link
	// Create, when set, creates the link instead of a netlink add of New (a TUN device,
	// which is made by opening /dev/net/tun).
	Create func() error
	// Incompatible says how an existing link differs in what cannot be changed in place
	// (type, VNI, local address, ...); "" when it can be adopted.
	Incompatible func(netlink.Link) string
	// CreateError wraps an error of creating the link (nil: "create <name>: <err>").
	CreateError func(error) error
	MTU         int
	Up          bool // also bring it up
}

// EnsureLink creates the link of s, adopts an existing one, or deletes and re-creates
// one that is incompatible (logged with the differences), then sets its MTU and, with Up,
// brings it up. It returns the link as it was read before the MTU and up state were
// corrected (its Index is current), whether it created the link, and whether it wrote
// anything. With nothing to correct it writes nothing.
func (h *Handle) EnsureLink(s LinkSpec, log klog.Logger) (l netlink.Link, created, changed bool, err error) {
	nl := h.Netlink()
	l, err = nl.LinkByName(s.Name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		l = nil
	case err != nil:
		return nil, false, false, fmt.Errorf("look up %s: %w", s.Name, err)
	}
	if l != nil {
		if why := s.Incompatible(l); why != "" {
			log.Info("Re-creating "+s.Kind+" device with different settings", "device", s.Name, "differences", why)
			changed = true
			if err := nl.LinkDel(l); err != nil {
				return nil, false, changed, fmt.Errorf("delete %s: %w", s.Name, err)
			}
			l = nil
		}
	}
	if l == nil {
		changed, created = true, true
		create := s.Create
		if create == nil {
			create = func() error { return nl.LinkAdd(s.New()) }
		}
		if err := create(); err != nil {
			if s.CreateError != nil {
				return nil, false, changed, s.CreateError(err)
			}
			return nil, false, changed, fmt.Errorf("create %s: %w", s.Name, err)
		}
		if l, err = nl.LinkByName(s.Name); err != nil {
			return nil, created, changed, fmt.Errorf("look up created %s: %w", s.Name, err)
		}
	}
	a := l.Attrs()
	if a.MTU != s.MTU {
		changed = true
		if err := nl.LinkSetMTU(l, s.MTU); err != nil {
			return nil, created, changed, fmt.Errorf("set MTU of %s to %d: %w", s.Name, s.MTU, err)
		}
		if !created {
			log.Info("Set "+s.Kind+" device MTU", "device", s.Name, "was", a.MTU, "mtu", s.MTU)
		}
	}
	if s.Up && a.Flags&net.FlagUp == 0 {
		changed = true
		if err := nl.LinkSetUp(l); err != nil {
			return nil, created, changed, fmt.Errorf("set %s up: %w", s.Name, err)
		}
		log.V(1).Info("Set "+s.Kind+" device up", "device", s.Name)
	}
	return l, created, changed, nil
}
