package tundev

import (
	"fmt"

	"github.com/weftnet/weft/backend/internal/fastpath/tun"
	"github.com/weftnet/weft/backend/internal/kernel"
)

// Reopen re-creates the device after someone deleted it — a TUN of the same name, opened with
// opts, in h's namespace — sets accept_local, points d at the new link index and gives it back
// its MTU, link state, addresses and routes (IPv6 too), before the caller reads from it.
// On success it reports a "device" repair to repaired. A nil h (the Network is closed) is
// an error. The caller serialises calls with its other uses of d.
func (d *Device) Reopen(h *kernel.Handle, opts tun.Options, repaired func(kind string)) (*tun.Device, error) {
	if h == nil {
		return nil, fmt.Errorf("%s: re-create %s: network closed", d.ErrPrefix, d.Name)
	}
	dev, err := d.attach(h, opts, h.InNamespace)
	if err != nil {
		return nil, fmt.Errorf("%s: re-create %s: %w", d.ErrPrefix, d.Name, err)
	}
	repaired("device")
	return dev, nil
}

// attach opens a queue on the device d.Name with opts (creating the device if it does
// not exist) and sets accept_local, both through inNS, which runs them in h's namespace;
// then it points d at the device and configures it (adopt). On error nothing stays open.
func (d *Device) attach(h *kernel.Handle, opts tun.Options, inNS func(func() error) error) (*tun.Device, error) {
	var dev *tun.Device
	err := inNS(func() error {
		var err error
		if dev, err = tun.OpenWith(d.Name, opts); err != nil {
			return err
		}
		return AllowLocalSource(d.Name, d.ErrPrefix)
	})
	if err == nil {
		err = d.adopt(h)
	}
	if err != nil {
		if dev != nil {
			dev.Close()
		}
		return nil, err
	}
	return dev, nil
}

// adopt points d at the device of its name that now exists and configures it.
func (d *Device) adopt(h *kernel.Handle) error {
	link, err := h.Netlink().LinkByName(d.Name)
	if err != nil {
		return err
	}
	d.Index = link.Attrs().Index
	return d.Ensure(h)
}
