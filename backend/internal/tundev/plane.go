package tundev

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/forward"
	"github.com/weftnet/weft/backend/internal/fastpath/tun"
	"github.com/weftnet/weft/backend/internal/kernel"
)

// PlaneConfig is what NewPlane needs: the device as Activate configured it, how to open
// its queue, the socket, and how to report repairs.
type PlaneConfig struct {
	Device Device         // as Activate returned it
	Handle *kernel.Handle // netlink in the device's namespace; the Plane closes it
	// Queue is the device's queue as Open returned it; nil: NewPlane opens one with
	// TUNOptions. The Plane owns it from the call to NewPlane.
	Queue *tun.Device
	// TUNOptions open the device's queue (unless Queue is set), and again a re-created
	// device's; their Batch is the Forwarder's batch size too.
	TUNOptions tun.Options
	Conn       fastpath.Conn // the underlay socket
	// Resync is the period of the full checks between kernel notifications
	// (kernel.DefaultPeriod if 0).
	Resync time.Duration
	// Repaired is told of every repair, by kind ("device", "address", "route"):
	// backend.Env.Repaired.
	Repaired func(kind string)
	Log      klog.Logger
}

// Plane is a userspace backend's running data plane: a forward.Forwarder between the TUN
// and the socket, and the upkeep of the TUN. What someone else changes on the device (its
// link state, MTU, addresses, the routes to the Network and the Network6) is put back as
// soon as the kernel reports it, and every Resync period anyway; a deleted device is
// re-created by the Forwarder through Reopen, with its configuration, while traffic
// waits.
type Plane struct {
	f        *forward.Forwarder
	tunOpts  tun.Options
	resync   time.Duration
	repaired func(kind string)
	log      klog.Logger

	mu         sync.Mutex     // guards dev.Index, h, lastRepair
	dev        Device         // only Index changes, when the device is re-created
	h          *kernel.Handle // nil after Close
	lastRepair string         // last repair outcome logged, so a lasting failure logs once

	closeOnce sync.Once
	closed    chan struct{} // closed by Close
}

// NewPlane opens the device's queue in the calling thread's network namespace (which must
// be the Handle's) unless c.Queue is set, builds the Forwarder between the queue and
// c.Conn for the device's own subnets (Own, Own6) at its MTU, and returns the Plane, which
// owns the queue, the Conn and the Handle from now on. On error it closes the queue and
// the Conn, and the caller keeps the Handle.
func NewPlane(c PlaneConfig) (*Plane, error) {
	d := c.Device
	queue := c.Queue
	if queue == nil {
		var err error
		if queue, err = tun.OpenWith(d.Name, c.TUNOptions); err != nil {
			c.Conn.Close()
			return nil, fmt.Errorf("%s: %w", d.ErrPrefix, err)
		}
	}
	p := &Plane{
		tunOpts:  c.TUNOptions,
		resync:   c.Resync,
		repaired: c.Repaired,
		log:      c.Log,
		dev:      d,
		h:        c.Handle,
		closed:   make(chan struct{}),
	}
	if p.repaired == nil {
		p.repaired = func(string) {}
	}
	cfg := forward.Config{Subnet: d.Own, Subnet6: d.Own6, MTU: d.MTU, BatchSize: c.TUNOptions.Batch, Log: c.Log, Reopen: p.reopen}
	var err error
	if p.f, err = forward.New(cfg, queue, c.Conn); err != nil {
		queue.Close()
		c.Conn.Close()
		return nil, fmt.Errorf("%s: %w", d.ErrPrefix, err)
	}
	return p, nil
}

// Forwarder returns the Forwarder, for its counters, offloads and peer table.
func (p *Plane) Forwarder() *forward.Forwarder { return p.f }

// SetResync changes the period of the full checks; it takes effect at Run, so call it
// before (tests shorten it).
func (p *Plane) SetResync(d time.Duration) { p.resync = d }

// MTU is the device's MTU.
func (p *Plane) MTU() int { return p.dev.MTU }

// Run forwards packets and keeps the device in place until ctx ends or Close is called.
// It returns an error only when forwarding fails for good.
func (p *Plane) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.mu.Lock()
	var changes <-chan kernel.Change
	var err error
	if p.h != nil {
		changes, err = p.h.Subscribe(ctx, p.dev.Families()...)
	}
	p.mu.Unlock()
	if err != nil && !errors.Is(err, kernel.ErrClosed) {
		p.log.Error(err, "Cannot watch kernel changes; checking the TUN device every period only", "device", p.dev.Name, "period", p.resync)
	}
	repairDone := make(chan struct{})
	go func() {
		defer close(repairDone)
		w := kernel.Watcher{Relevant: p.relevant, Reconcile: p.repair, Period: p.resync, Log: p.log}
		w.Run(ctx, changes)
	}()
	go func() {
		select {
		case <-p.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	err = p.f.Run(ctx)
	cancel()
	<-repairDone
	return err
}

// relevant reports whether a kernel change may concern the device (Device.Concerns).
func (p *Plane) relevant(c kernel.Change) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dev.Concerns(c)
}

// repair re-checks the device and fixes what drifted, logging and counting each repair
// and logging a lasting failure once. It reports whether it found drift, and an error
// while the device is not as wanted.
func (p *Plane) repair() (drift bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h == nil {
		return false, nil
	}
	faults, err := p.dev.Drift(p.h)
	if errors.Is(err, ErrGone) {
		// Deleted: the Forwarder's device loop finds its queue detached and re-creates
		// the device through reopen, which also puts its configuration back.
		return false, nil
	}
	if err == nil && len(faults) > 0 {
		drift = true
		var what []string
		for _, f := range faults {
			what = append(what, f.What)
		}
		p.log.Info("Repairing TUN device changed by someone else", "device", p.dev.Name, "drift", strings.Join(what, ", "))
		err = p.dev.Ensure(p.h)
		if err == nil {
			seen := map[string]bool{}
			for _, f := range faults {
				if !seen[f.Kind] {
					seen[f.Kind] = true
					p.repaired(f.Kind)
				}
			}
		}
	}
	outcome := ""
	if err != nil {
		outcome = err.Error()
		if outcome != p.lastRepair {
			p.log.Error(err, "Cannot repair TUN device; retrying", "device", p.dev.Name)
		}
	} else if p.lastRepair != "" {
		p.log.Info("TUN device in place again", "device", p.dev.Name)
	}
	p.lastRepair = outcome
	return drift, err
}

// reopen is the Forwarder's Config.Reopen: it re-creates the device after someone
// deleted it (Device.Reopen), counted as a "device" repair; the Forwarder logs it.
func (p *Plane) reopen() (fastpath.Device, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	queue, err := p.dev.Reopen(p.h, p.tunOpts, p.repaired)
	if err != nil {
		return nil, err
	}
	return queue, nil
}

// Close stops forwarding and releases the TUN queue, the socket and the netlink handle.
// A persistent device (TUNOptions.Persist) stays with its address and route, so that a
// restarted weftd adopts them; any other goes away with them. Idempotent.
func (p *Plane) Close() error {
	var err error
	p.closeOnce.Do(func() {
		close(p.closed)
		err = p.f.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.h != nil {
			err = errors.Join(err, p.h.Close())
			p.h = nil
		}
	})
	return err
}
