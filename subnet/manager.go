package subnet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

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
