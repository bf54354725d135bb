package subnet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/pkg/wait"
	"k8s.io/klog/v2"
)

// Defaults as flanneld's.
const (
	DefaultLeaseTTL    = 24 * time.Hour
	DefaultRenewMargin = time.Hour
	// maxCandidates: like flanneld, pick at random among the first free subnets only, so
	// a large network does not cost a walk over all of it.
	maxCandidates = 100
	// maxCreateAttempts bounds how often one Acquire retries after losing create races.
	maxCreateAttempts = 20
	// storeTimeout bounds one renewal or one re-list while holding a lease, so that an
	// unreachable store fails the attempt (logged, retried) instead of blocking it forever.
	storeTimeout = 10 * time.Second
)

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	Registry    Registry
	Network     *Config
	TTL         time.Duration // lease TTL; DefaultLeaseTTL when zero
	RenewMargin time.Duration // renew this long before expiry; DefaultRenewMargin when zero
	Log         klog.Logger
	Rand        *rand.Rand // subnet choice; a random seed when nil
	// Observer, if set, is told about renewals, resyncs and errors (for metrics).
	Observer Observer
	// Peers is the backend's part of peer admission (see Admission).
	Peers PeerRule
}

// Observer receives control-plane facts for metrics. Methods must not block.
type Observer interface {
	LeaseRenewed(l Lease)
	LeaseRenewFailed(err error)
	WatchResynced()
	StoreError(op string, err error)
	// LeasesIgnored gives the number of leases in the store that are not peers, by reason
	// (the Ignored* names), each time it changes.
	LeasesIgnored(byReason map[string]int)
}

type nopObserver struct{}

func (nopObserver) LeaseRenewed(Lease)           {}
func (nopObserver) LeaseRenewFailed(error)       {}
func (nopObserver) WatchResynced()               {}
func (nopObserver) StoreError(string, error)     {}
func (nopObserver) LeasesIgnored(map[string]int) {}

// Manager is the lease policy over a Registry: which subnet to take, keeping it, and
// turning the store's changes into peer events.
//
// Acquire and Hold are called from one goroutine (the daemon's lease loop); WatchPeers runs
// in another. They share only the current own lease (guarded by mu) and the lost channel.
type Manager struct {
	reg    Registry
	cfg    *Config
	ttl    time.Duration
	margin time.Duration
	log    klog.Logger
	obs    Observer

	randMu sync.Mutex // guards rnd
	rnd    *rand.Rand

	peers PeerRule

	mu      sync.Mutex     // guards own and ignored
	own     Lease          // the lease this node holds; zero before the first Acquire
	ignored []IgnoredLease // what WatchPeers ignores, by key

	// lost carries the store revision at which the watch saw my lease deleted or taken.
	lost chan int64
	// renewNow asks Hold to renew at once: the watch saw the store come back after an
	// outage, during which the lease may have come close to expiry.
	renewNow chan struct{}
}

// NewManager returns a Manager. cfg.Registry and cfg.Network are required.
func NewManager(cfg ManagerConfig) *Manager {
	m := &Manager{
		reg:      cfg.Registry,
		cfg:      cfg.Network,
		ttl:      cfg.TTL,
		margin:   cfg.RenewMargin,
		log:      cfg.Log,
		obs:      cfg.Observer,
		peers:    cfg.Peers,
		rnd:      cfg.Rand,
		lost:     make(chan int64, 1),
		renewNow: make(chan struct{}, 1),
	}
	if m.ttl <= 0 {
		m.ttl = DefaultLeaseTTL
	}
	if m.margin <= 0 {
		m.margin = DefaultRenewMargin
	}
	if m.margin >= m.ttl {
		m.margin = m.ttl / 2
	}
	if m.obs == nil {
		m.obs = nopObserver{}
	}
	if m.rnd == nil {
		m.rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return m
}

// Own returns the lease this node holds (zero before Acquire succeeds).
func (m *Manager) Own() Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.own
}

func (m *Manager) setOwn(l Lease) {
	m.mu.Lock()
	m.own = l
	m.mu.Unlock()
}

// Acquire takes a lease for a node publishing attrs, in flannel's order: the existing lease
// naming this node's public address (a reservation stays a reservation); then the subnets
// of hint (those of the previous subnet file, or of the lease just lost) if they are free
// and in range; then random free subnets among the first ones from SubnetMin (and
// IPv6SubnetMin). A lease has one subnet per family the network runs. Losing a create race
// moves on to other subnets. When a range is full it returns an error wrapping
// ErrNoFreeSubnet.
//
// With a Registry that assigns the subnets (an Assigner: Kubernetes) there is no choice to
// make: Acquire claims the assigned subnets, which must fit the config, and hint is unused.
func (m *Manager) Acquire(ctx context.Context, attrs LeaseAttrs, hint Lease) (Lease, error) {
	if as, ok := m.reg.(Assigner); ok {
		l, err := m.claimAssigned(ctx, as, attrs)
		if err == nil {
			m.setOwn(l)
		}
		return l, err
	}
	for attempt := 0; attempt < maxCreateAttempts; attempt++ {
		l, err := m.tryAcquire(ctx, attrs, hint)
		if err == nil {
			m.setOwn(l)
			return l, nil
		}
		if !errors.Is(err, ErrTaken) {
			return Lease{}, err
		}
		// Lost a race: the next list shows the winner. Avoid lock-step retries.
		hint = Lease{}
		if err := wait.Sleep(ctx, m.jitter(10*time.Millisecond, 50*time.Millisecond)); err != nil {
			return Lease{}, err
		}
	}
	return Lease{}, fmt.Errorf("acquire: lost %d create races in a row: %w", maxCreateAttempts, ErrTaken)
}

// claimAssigned claims the subnets the Registry assigns to this node.
func (m *Manager) claimAssigned(ctx context.Context, as Assigner, attrs LeaseAttrs) (Lease, error) {
	sn, sn6, err := as.AssignedSubnets(ctx)
	if err != nil {
		return Lease{}, err
	}
	want := Lease{Subnet: sn, IPv6Subnet: sn6}
	if !m.cfg.Fits(want) {
		return Lease{}, fmt.Errorf("the subnets %s assigned to this node do not fit the network config (%s): the config's networks and subnet lengths must match how the cluster assigns node subnets",
			describeSubnets(sn, sn6), m.cfg.describe())
	}
	l, err := m.reg.CreateLease(ctx, sn, sn6, attrs, 0)
	if err != nil {
		m.obs.StoreError("create", err)
		return Lease{}, fmt.Errorf("claim the assigned subnets %s: %w", describeSubnets(sn, sn6), err)
	}
	m.log.Info("Claimed the subnets assigned to this node", "subnet", sn, "ipv6Subnet", sn6, "publicIP", l.Attrs.PublicIP, "publicIPv6", l.Attrs.PublicIPv6)
	return l, nil
}

// describeSubnets names a lease's subnets for messages: "10.244.5.0/24", "fd00::/64" or
// "10.244.5.0/24 and fd00::/64".
func describeSubnets(sn, sn6 netip.Prefix) string {
	switch {
	case sn.IsValid() && sn6.IsValid():
		return sn.String() + " and " + sn6.String()
	case sn6.IsValid():
		return sn6.String()
	}
	return sn.String()
}

// describe names the config's networks for messages.
func (c *Config) describe() string {
	var parts []string
	if c.EnableIPv4 {
		parts = append(parts, fmt.Sprintf("/%d subnets of %s", c.SubnetLen, c.Network))
	}
	if c.EnableIPv6 {
		parts = append(parts, fmt.Sprintf("/%d subnets of %s", c.IPv6SubnetLen, c.IPv6Network))
	}
	return strings.Join(parts, " and ")
}

func (m *Manager) tryAcquire(ctx context.Context, attrs LeaseAttrs, hint Lease) (Lease, error) {
	list, err := m.reg.ListLeases(ctx)
	if err != nil {
		m.obs.StoreError("list", err)
		return Lease{}, fmt.Errorf("list leases: %w", err)
	}
	if mine, ok := findMine(list.Leases, attrs, m.cfg, hint); ok {
		return m.reuse(ctx, mine, attrs)
	}
	var taken4, taken6 takenSet
	if m.cfg.EnableIPv4 {
		taken4 = newTakenSet(m.cfg.Network, list.Leases)
	}
	if m.cfg.EnableIPv6 {
		taken6 = newTakenSet(m.cfg.IPv6Network, list.Leases)
	}
	if (hint.Subnet.IsValid() || hint.IPv6Subnet.IsValid()) && m.hintFree(hint, taken4, taken6) {
		sn, sn6 := hint.Subnet.Masked(), hint.IPv6Subnet.Masked()
		l, err := m.reg.CreateLease(ctx, sn, sn6, attrs, m.ttl)
		if err == nil {
			m.log.Info("Took the subnets of the previous subnet file", "subnet", sn, "ipv6Subnet", sn6)
			return l, nil
		}
		if !errors.Is(err, ErrTaken) {
			return Lease{}, fmt.Errorf("create lease %s: %w", describeSubnets(sn, sn6), err)
		}
	}
	var sn, sn6 netip.Prefix
	if m.cfg.EnableIPv4 {
		free := taken4.free(m.cfg.SubnetMin, m.cfg.SubnetMax, m.cfg.SubnetLen, maxCandidates)
		if len(free) == 0 {
			return Lease{}, fmt.Errorf("all subnets from %s to %s (/%d) of %s are taken: %w",
				m.cfg.SubnetMin, m.cfg.SubnetMax, m.cfg.SubnetLen, m.cfg.Network, ErrNoFreeSubnet)
		}
		sn = free[m.intN(len(free))]
	}
	if m.cfg.EnableIPv6 {
		free := taken6.free(m.cfg.IPv6SubnetMin, m.cfg.IPv6SubnetMax, m.cfg.IPv6SubnetLen, maxCandidates)
		if len(free) == 0 {
			return Lease{}, fmt.Errorf("all IPv6 subnets from %s to %s (/%d) of %s are taken: %w",
				m.cfg.IPv6SubnetMin, m.cfg.IPv6SubnetMax, m.cfg.IPv6SubnetLen, m.cfg.IPv6Network, ErrNoFreeSubnet)
		}
		sn6 = free[m.intN(len(free))]
	}
	l, err := m.reg.CreateLease(ctx, sn, sn6, attrs, m.ttl)
	if err != nil {
		return Lease{}, fmt.Errorf("create lease %s: %w", describeSubnets(sn, sn6), err)
	}
	return l, nil
}

// hintFree reports whether hint has a subnet for exactly the families the network runs,
// each in range and free.
func (m *Manager) hintFree(hint Lease, taken4, taken6 takenSet) bool {
	h := Lease{Subnet: hint.Subnet.Masked(), IPv6Subnet: hint.IPv6Subnet.Masked()}
	if !hint.Subnet.IsValid() {
		h.Subnet = netip.Prefix{}
	}
	if !hint.IPv6Subnet.IsValid() {
		h.IPv6Subnet = netip.Prefix{}
	}
	if !m.cfg.Fits(h) {
		return false
	}
	return (!m.cfg.EnableIPv4 || (m.cfg.InRange(h.Subnet) && !taken4.overlaps(h.Subnet))) &&
		(!m.cfg.EnableIPv6 || (m.cfg.InRangeIPv6(h.IPv6Subnet) && !taken6.overlaps(h.IPv6Subnet)))
}

// reuse keeps my existing lease: renew it in place when its value is already right,
// otherwise rewrite it (a reservation stays a reservation).
func (m *Manager) reuse(ctx context.Context, mine Lease, attrs LeaseAttrs) (Lease, error) {
	if mine.Attrs.Equal(attrs) {
		l, err := m.reg.RenewLease(ctx, mine)
		if err == nil {
			m.log.Info("Reusing my existing lease", "lease", mine.Key(), "reserved", mine.Reserved())
			return l, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return Lease{}, fmt.Errorf("renew lease %s: %w", mine.Key(), err)
		}
	}
	ttl := m.ttl
	if mine.Reserved() {
		ttl = 0
	}
	l, err := m.reg.UpdateLease(ctx, mine, attrs, ttl)
	if err != nil {
		return Lease{}, fmt.Errorf("update lease %s: %w", mine.Key(), err)
	}
	m.log.Info("Reusing my existing lease with updated attributes", "lease", l.Key(), "reserved", l.Reserved())
	return l, nil
}

// findMine returns the lease of this node that fits the config (a subnet for exactly the
// families it runs): one naming attrs.PublicIP, or in an IPv6-only network
// attrs.PublicIPv6. It prefers a reservation (an operator's pin beats an ordinary lease the
// node may also still hold), then the lease of hint (the subnets the node had: another lease
// naming its address, e.g. a stale one, must not move its pods), then the first in key order.
func findMine(leases []Lease, attrs LeaseAttrs, cfg *Config, hint Lease) (Lease, bool) {
	var found Lease
	rank := 0 // 0: none, 1: any, 2: the hint's, 3: a reservation
	for _, l := range leases {
		if !isMine(l, attrs, cfg) {
			continue
		}
		r := 1
		switch {
		case l.Reserved():
			r = 3
		case sameSubnets(l, hint):
			r = 2
		}
		if r > rank {
			found, rank = l, r
		}
	}
	return found, rank > 0
}

// isMine reports whether l fits cfg and names the node publishing attrs.
func isMine(l Lease, attrs LeaseAttrs, cfg *Config) bool {
	if !cfg.Fits(l) {
		return false
	}
	if cfg.EnableIPv4 {
		return attrs.PublicIP.IsValid() && l.Attrs.PublicIP == attrs.PublicIP
	}
	return attrs.PublicIPv6.IsValid() && l.Attrs.PublicIPv6 == attrs.PublicIPv6
}

// sameSubnets reports whether l has the subnets of hint (any hint subnet given, masked).
func sameSubnets(l, hint Lease) bool {
	if !hint.Subnet.IsValid() && !hint.IPv6Subnet.IsValid() {
		return false
	}
	same := func(a, b netip.Prefix) bool { return a.IsValid() == b.IsValid() && (!a.IsValid() || a == b.Masked()) }
	return same(l.Subnet, hint.Subnet) && same(l.IPv6Subnet, hint.IPv6Subnet)
}

// FreeSubnets returns up to limit IPv4 subnets in [SubnetMin, SubnetMax] that overlap no
// taken subnet inside the Network, whatever its length, in ascending order.
func FreeSubnets(cfg *Config, taken []netip.Prefix, limit int) []netip.Prefix {
	leases := make([]Lease, len(taken))
	for i, p := range taken {
		leases[i] = Lease{Subnet: p}
	}
	return newTakenSet(cfg.Network, leases).free(cfg.SubnetMin, cfg.SubnetMax, cfg.SubnetLen, limit)
}

// Hold keeps the lease alive until ctx ends (then it returns nil). It renews the TTL
// RenewMargin before expiry without rewriting the value, and retries a failing store until
// the lease would expire. It returns an error wrapping ErrLeaseLost when the lease is gone
// (deleted, expired, or taken over by another node, as seen by WatchPeers or on renewal).
// onRenew, if not nil, is called after each successful renewal.
func (m *Manager) Hold(ctx context.Context, l Lease, onRenew func(Lease)) error {
	m.setOwn(l)
	failing := false
	for {
		var fire <-chan time.Time // nil for a reservation: nothing to renew
		if !l.Reserved() {
			wait := time.Until(l.Expiration.Add(-m.margin))
			if failing {
				wait = min(wait, m.retryDelay())
			}
			fire = time.After(max(wait, 0)) // unreferenced timers are collected (Go 1.23+)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.renewNow:
			// The store is back after an outage. For a reservation this checks the key.
			if err := m.renew(ctx, &l, &failing, onRenew); err != nil {
				return err
			}
		case rev := <-m.lost:
			if rev >= l.Revision {
				return fmt.Errorf("lease %s was deleted or taken over at revision %d: %w", l.Key(), rev, ErrLeaseLost)
			}
			// A stale signal from before this lease was written: keep holding.
		case <-fire:
			if err := m.renew(ctx, &l, &failing, onRenew); err != nil {
				return err
			}
		}
	}
}

// renew renews *l once. It returns nil when renewed, when ctx ended, or when the store is
// failing but the lease has not expired yet (Hold retries); an error wrapping ErrLeaseLost
// when the lease is gone.
func (m *Manager) renew(ctx context.Context, l *Lease, failing *bool, onRenew func(Lease)) error {
	rctx, cancel := context.WithTimeout(ctx, storeTimeout)
	renewed, err := m.reg.RenewLease(rctx, *l)
	cancel()
	if err == nil {
		if *failing {
			m.log.Info("Lease renewal works again", "lease", l.Key())
		}
		*failing, *l = false, renewed
		m.setOwn(renewed)
		m.obs.LeaseRenewed(renewed)
		if onRenew != nil {
			onRenew(renewed)
		}
		return nil
	}
	if ctx.Err() != nil {
		return nil
	}
	m.obs.LeaseRenewFailed(err)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("lease %s vanished before renewal: %w", l.Key(), ErrLeaseLost)
	}
	if !*failing {
		m.log.Error(err, "Lease renewal failed; retrying", "lease", l.Key(), "expires", l.Expiration)
	}
	*failing = true
	if time.Now().After(l.Expiration) {
		return fmt.Errorf("lease %s expired while the store was unreachable (%v): %w", l.Key(), err, ErrLeaseLost)
	}
	return nil
}

// RenewSoon asks Hold to renew the lease at once (after the store came back from an outage).
func (m *Manager) RenewSoon() {
	select {
	case m.renewNow <- struct{}{}:
	default:
	}
}

func (m *Manager) retryDelay() time.Duration { return m.jitter(time.Second, 2*time.Second) }

// signalLost records that the watch saw my lease go at rev; Hold picks it up.
func (m *Manager) signalLost(rev int64) {
	for {
		select {
		case m.lost <- rev:
			return
		default:
		}
		select { // replace an older, unread signal
		case <-m.lost:
		default:
		}
	}
}

func (m *Manager) intN(n int) int {
	m.randMu.Lock()
	defer m.randMu.Unlock()
	return m.rnd.IntN(n)
}

func (m *Manager) jitter(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(m.intN(int(hi-lo)+1))
}
