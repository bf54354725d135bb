// Package daemon wires weftd together: the subnet store and manager, the chosen backend,
// the subnet file, firewall rules and the health endpoint, run as one errgroup.
//
// Data flows one way: config -> lease -> peers -> backend -> kernel. The daemon never exits
// because of what it reads from the store: a missing or broken config is waited out, a
// malformed peer lease is skipped, an unreachable store is retried, and a running data
// plane is left alone throughout.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/firewall/iptables"
	"github.com/weftnet/weft/pkg/firewall/nftables"
	"github.com/weftnet/weft/pkg/health"
	"github.com/weftnet/weft/pkg/iface"
	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/pkg/metrics"
	"github.com/weftnet/weft/pkg/status"
	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/pkg/wait"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcdv3"
)

// Config is everything weftd is told on its command line.
type Config struct {
	Etcd         etcdv3.Config
	Iface        iface.Options
	SubnetFile   string
	LeaseTTL     time.Duration
	RenewMargin  time.Duration
	IPMasq       bool
	ForwardRules bool
	IPTablesSync time.Duration
	// RestrictTunnelPort makes the INPUT rules drop the encapsulation port from anyone
	// but current peers.
	RestrictTunnelPort bool
	HealthzAddr        string // host:port; empty disables the health server
	Version            string

	// IPMasqNoRandomFully masquerades without --random-fully (--ip-masq-fully-random-disable).
	IPMasqNoRandomFully bool
	// BlackholeRoute keeps a blackhole route for the node's subnet (--ip-blackhole-route;
	// see blackhole.go).
	BlackholeRoute bool
	// Kube, if set, runs weftd in Kubernetes mode instead of on etcd.
	Kube *KubeConfig
}

// Daemon is one weftd.
type Daemon struct {
	cfg     Config
	log     klog.Logger
	health  *health.State
	metrics *metrics.Metrics
	view    *view
	memory  *memoryGovernor
	// acquireTimeout bounds one attempt to acquire a lease (defaultAcquireTimeout).
	acquireTimeout time.Duration
}

// New returns a daemon; nothing runs until Run.
func New(cfg Config, log klog.Logger) *Daemon {
	d := &Daemon{cfg: cfg, log: log, health: health.NewState(nil), metrics: metrics.New(cfg.Version),
		view: &view{started: time.Now()}, memory: newMemoryGovernor(), acquireTimeout: defaultAcquireTimeout}
	d.metrics.SetPacketSource(d.view.packetStats)
	return d
}

// Run runs weftd until ctx ends (returns nil) or a fatal error. Fatal errors are only those
// of the node itself: a bad flag value, no usable interface, a backend that cannot start.
func (d *Daemon) Run(ctx context.Context) error {
	d.memory.setPeers(0)
	defer d.memory.stop()
	reg, err := d.openRegistry(ctx)
	if err != nil {
		return err
	}
	defer reg.Close()

	g, ctx := errgroup.WithContext(ctx)
	if d.cfg.HealthzAddr != "" {
		srv := health.NewServer(d.cfg.HealthzAddr, d.health, map[string]http.Handler{
			"/metrics":  d.metrics.Handler(),
			status.Path: status.Handler(func() status.Status { return d.view.status(d.cfg.Version) }),
		})
		if err := srv.Listen(); err != nil {
			return fmt.Errorf("--healthz-ip/--healthz-port %s: %w", d.cfg.HealthzAddr, err)
		}
		d.log.Info("Serving health endpoints", "addr", srv.Addr().String())
		g.Go(func() error { return srv.Run(ctx) })
	}
	g.Go(func() error { return d.run(ctx, reg) })
	return g.Wait()
}

func (d *Daemon) run(ctx context.Context, reg subnet.Registry) error {
	makeFirewall := d.startFirewall() // off the critical path; awaited before the lease

	var hint subnet.Lease // the subnets of the previous subnet file, tried first
	if old, err := subnetenv.Read(d.cfg.SubnetFile); err == nil {
		hint = subnet.Lease{Subnet: old.Subnet.Masked(), IPv6Subnet: old.IPv6Subnet.Masked()}
	}
	var (
		cur    *prepared // the backend of the config in force
		fw     firewall.Firewall
		prev   subnet.Lease
		ext    backend.ExternalInterface
		extFor string // the families ext was selected for
	)
	defer func() { cur.close() }()
	for first := true; ctx.Err() == nil; first = false {
		// The config is read again before every acquisition: a lease lost while the
		// config changed is taken again under the current config.
		netCfg, btype, rev, err := d.waitConfig(ctx, reg)
		if err != nil || netCfg == nil {
			return err // ctx ended
		}
		if extFor != netCfg.Families() {
			// The interface is selected for the families the network runs: its IPv4
			// address, its IPv6 address, or both.
			if ext, err = d.selectInterface(ctx, reg, netCfg); err != nil {
				return err
			}
			extFor = netCfg.Families()
		}
		if cur == nil || !sameConfig(cur.cfg, netCfg) || cur.ext != ext {
			if cur != nil {
				d.log.Info("The network config changed while the lease was lost; applying it now",
					"network", netCfg.Network, "subnetLen", netCfg.SubnetLen, "backend", netCfg.BackendType)
				cur.close()
			}
			d.log.Info("Network config", netConfigLog(netCfg)...)
			for _, w := range netCfg.Warnings {
				d.log.Info("Network config warning: "+w, "key", d.configKey())
			}
			d.view.setConfigWarnings(netCfg.Warnings)
			if cur, err = d.prepare(ctx, netCfg, btype, ext); err != nil {
				return err
			}
		}
		mgr := subnet.NewManager(subnet.ManagerConfig{
			Registry: reg, Network: cur.cfg, TTL: d.cfg.LeaseTTL, RenewMargin: d.cfg.RenewMargin,
			Log: d.log.WithName("lease"), Observer: d.metrics, Peers: cur.btype.Admission(),
		})
		if first {
			if fw, err = makeFirewall(netCfg.EnableNFTables); err != nil {
				return err
			}
		}
		lease, err := d.acquire(ctx, mgr, cur.attrs, hint)
		if err != nil {
			return nil // ctx ended
		}
		if !prev.IsZero() && prev.Key() != lease.Key() {
			d.log.Error(nil, "SUBNET CHANGED: this node now has a different subnet; pods on it must be restarted to move",
				"from", prev.Key(), "to", lease.Key())
			d.health.NoteSubnetChange(prev.FirstSubnet(), lease.FirstSubnet())
			d.metrics.SubnetChanged()
		}
		prev, hint = lease, lease
		err = d.session(ctx, reg, mgr, cur.be, cur.btype.Name, cur.cfg, lease, rev, fw)
		if !errors.Is(err, subnet.ErrLeaseLost) {
			return err
		}
		d.health.SetLease(netip.Prefix{})
		d.metrics.SetLease(subnet.Lease{})
		d.health.SetError(err)
		d.log.Error(err, "MY LEASE IS GONE: acquiring again, trying the same subnet first", "lease", lease.Key())
	}
	return nil
}

// session runs the data plane for one lease until ctx ends or the lease is lost.
func (d *Daemon) session(ctx context.Context, reg subnet.Registry, mgr *subnet.Manager, be backend.Backend,
	btype string, netCfg *subnet.Config, lease subnet.Lease, cfgRev int64, fw firewall.Firewall) error {
	nw, err := be.Activate(ctx, lease)
	if err != nil {
		return fmt.Errorf("backend %s: activate for %s: %w", btype, lease.Key(), err)
	}
	defer nw.Close()
	mode := ""
	if ds, ok := nw.(backend.Describer); ok {
		mode = ds.Describe().Info["mode"]
	}
	d.metrics.SetBackend(btype, mode)
	defer d.metrics.SetBackend("", "")
	if mu, ok := nw.(backend.MemoryUser); ok {
		d.memory.setFloor(mu.MemoryFloor())
		defer d.memory.setFloor(0)
	}
	d.view.setSession(nw, btype, netCfg, lease, mgr.Ignored)
	defer d.view.setSession(nil, btype, nil, subnet.Lease{}, nil)
	d.metrics.SetLease(lease)
	d.health.SetLease(lease.FirstSubnet())
	d.health.SetBackend(btype, false)

	env := subnetenv.Env{MTU: nw.MTU(), IPMasq: d.cfg.IPMasq}
	if netCfg.EnableIPv4 {
		env.Network = netCfg.Network
		env.Subnet = netip.PrefixFrom(ip.GatewayAddr(lease.Subnet), lease.Subnet.Bits())
	}
	if netCfg.EnableIPv6 {
		env.IPv6Network = netCfg.IPv6Network
		env.IPv6Subnet = netip.PrefixFrom(ip.GatewayAddr(lease.IPv6Subnet), lease.IPv6Subnet.Bits())
	}
	g, gctx := errgroup.WithContext(ctx)
	// The subnet file (written with an fsync: milliseconds) goes out while the peers are
	// listed and programmed; failing to write it still ends the session.
	g.Go(func() error { return d.writeSubnetFile(env) })
	events := make(chan []subnet.Event, eventQueue)
	applied := make(chan struct{}) // closed after the first Apply
	g.Go(func() error { return mgr.Hold(gctx, lease, d.view.renewedLease) })
	g.Go(func() error { return mgr.WatchPeers(gctx, events) })
	g.Go(func() error { return nw.Run(gctx) })
	g.Go(func() error { return d.watchConfig(gctx, reg, netCfg, cfgRev) })
	if netCfg.EnableIPv4 {
		g.Go(func() error { return d.keepBlackhole(gctx, currentNS{}, netCfg.Network, lease.Subnet) })
	}
	if netCfg.EnableIPv6 {
		g.Go(func() error { return d.keepBlackhole(gctx, currentNS{}, netCfg.IPv6Network, lease.IPv6Subnet) })
	}
	if fw != nil {
		// The rules come after the routes: the data plane is programmed first.
		fw.SetNetwork(firewall.Overlay{Network: netCfg.Network, Subnet: lease.Subnet, IPv6Network: netCfg.IPv6Network, IPv6Subnet: lease.IPv6Subnet})
		g.Go(func() error { return runFirewallAfter(gctx, fw, applied) })
	}
	g.Go(func() error {
		tunnelSet := false
		for {
			select {
			case <-gctx.Done():
				return nil
			case evs := <-events:
				evs = drainEvents(events, evs) // one Apply for everything queued
				if err := nw.Apply(gctx, evs); err != nil {
					d.log.V(1).Info("Some peers are not programmed yet; retrying", "err", err)
				}
				d.health.SetBackend(btype, true)
				addrs, npeers := d.view.applied(evs)
				d.metrics.SetPeers(npeers)
				d.memory.setPeers(npeers)
				d.memory.applied(len(evs))
				if fw != nil {
					fw.SetPeers(addrs)
					if !tunnelSet {
						// The tunnel port is set only once the first batch (the
						// initial peers) is known: until then the firewall leaves the
						// INPUT chain of the previous run alone, which admits the peers.
						// Set earlier, a restart would rewrite it for no peers at all
						// and drop their tunnel traffic for a few milliseconds.
						setTunnelPort(fw, nw)
						tunnelSet = true
					}
				}
				select {
				case <-applied:
				default:
					close(applied)
					g.Go(func() error { return d.markNetworkAvailable(gctx, reg) })
				}
			}
		}
	})
	return g.Wait()
}

// writeSubnetFile writes the subnet file and tells systemd READY=1.
func (d *Daemon) writeSubnetFile(env subnetenv.Env) error {
	if err := subnetenv.Write(d.cfg.SubnetFile, env); err != nil {
		return err
	}
	d.health.SetSubnetFile(d.cfg.SubnetFile)
	d.log.Info("Wrote subnet file", "path", d.cfg.SubnetFile, "subnet", env.Subnet, "mtu", env.MTU)
	if ok, err := sddaemon.SdNotify(false, sddaemon.SdNotifyReady); err != nil {
		d.log.Error(err, "Telling systemd READY=1 failed")
	} else if ok {
		d.log.V(1).Info("Told systemd READY=1")
	}
	return nil
}

// defaultAcquireTimeout bounds one attempt to acquire a lease: an etcd that cannot be
// reached (down, or refusing a rotated certificate) is reported with its reason and
// retried, not waited for in silence.
const defaultAcquireTimeout = 10 * time.Second

// acquire gets a lease, retrying (with backoff, logging each new reason once) while the
// range is full or the store is unreachable. It returns an error only when ctx ends.
func (d *Daemon) acquire(ctx context.Context, mgr *subnet.Manager, attrs subnet.LeaseAttrs, hint subnet.Lease) (subnet.Lease, error) {
	delay := 500 * time.Millisecond
	var last string
	for {
		actx, cancel := context.WithTimeout(ctx, d.acquireTimeout)
		l, err := mgr.Acquire(actx, attrs, hint)
		cancel()
		if err == nil {
			d.log.Info("Acquired lease", "lease", l.Key(), "publicIP", l.Attrs.PublicIP, "publicIPv6", l.Attrs.PublicIPv6, "reserved", l.Reserved(), "expires", l.Expiration)
			return l, nil
		}
		if ctx.Err() != nil {
			return subnet.Lease{}, ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("etcd did not answer within %v: %w", d.acquireTimeout, err)
		}
		if errors.Is(err, subnet.ErrNotAssigned) {
			delay = 250 * time.Millisecond // AssignedSubnet itself waits for the subnet
		}
		d.health.SetError(err)
		if err.Error() != last {
			d.log.Error(err, "Cannot acquire a subnet lease yet; retrying")
			last = err.Error()
		}
		if err := wait.Sleep(ctx, delay+rand.N(delay/2)); err != nil {
			return subnet.Lease{}, err
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// setTunnelPort tells the firewall which encapsulation nw receives (none for host-gw),
// and the IPv6 side's port where it differs.
func setTunnelPort(fw firewall.Firewall, nw backend.Network) {
	port6 := 0
	if t, ok := nw.(backend.TunnelV6); ok {
		port6 = t.TunnelPortV6()
	}
	fw.SetTunnelPortV6(port6)
	if t, ok := nw.(backend.Tunnel); ok {
		fw.SetTunnelPort(t.TunnelPort())
	} else {
		fw.SetTunnelPort("", 0)
	}
}

// wantsFirewall reports whether any rule is wanted: with masquerade, forward rules and the
// tunnel-port restriction all off, weftd keeps no firewall at all.
func (d *Daemon) wantsFirewall() bool {
	return d.cfg.IPMasq || d.cfg.ForwardRules || d.cfg.RestrictTunnelPort
}

// newFirewall returns the firewall the network config asks for: nftables (weft's own table,
// through netlink) when it enables nftables, else iptables through ipt, the front end the
// host uses (iptables.Find; iptErr when there is none). Each is handed the other mode to
// clean away, so a switch leaves nothing of the old one. It returns nil when no rule is
// wanted: then weftd runs neither iptables nor nftables.
func (d *Daemon) newFirewall(enableNFTables bool, ipt *iptables.Tool, iptErr error) (firewall.Firewall, error) {
	if !d.wantsFirewall() {
		d.log.Info("No firewall rules wanted (--ip-masq, --iptables-forward-rules and --restrict-tunnel-port are off); not using iptables or nftables")
		return nil, nil
	}
	opts := firewall.Options{
		IPMasq: d.cfg.IPMasq, DisableFullyRandom: d.cfg.IPMasqNoRandomFully, ForwardRules: d.cfg.ForwardRules,
		RestrictTunnelPort: d.cfg.RestrictTunnelPort, Resync: d.cfg.IPTablesSync,
	}
	if enableNFTables {
		opts.OnRepair = func() { d.metrics.Repaired("nftables") }
		if iptErr == nil {
			opts.Replaces = iptables.New(ipt, firewall.Options{DisableFullyRandom: true}, d.log.WithName("iptables"))
		}
		d.log.Info("Firewall rules in nftables (EnableNFTables), table ip " + nftables.TableName)
		return nftables.New(opts, d.log.WithName("nftables")), nil
	}
	if iptErr != nil {
		return nil, fmt.Errorf("iptables rules (--ip-masq, --iptables-forward-rules and the tunnel port rules need them; or set EnableNFTables): %w", iptErr)
	}
	opts.OnRepair = func() { d.metrics.Repaired("iptables") }
	opts.Replaces = nftables.Leftovers(d.log.WithName("nftables"))
	return iptables.New(ipt, opts, d.log.WithName("iptables")), nil
}

func withLog(o iface.Options, log klog.Logger) iface.Options {
	o.Log = log.WithName("iface")
	return o
}
