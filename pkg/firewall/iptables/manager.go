// Package iptables keeps weft's packet-filter rules: flanneld's masquerade and forward
// rules, and the tunnel-port rules, each in a chain weft owns (WEFT-POSTRTG in nat, WEFT-FWD
// and WEFT-INPUT in filter), reached by one jump rule from POSTROUTING, FORWARD and INPUT.
// Outside its own chains it adds and removes those jump rules and nothing else; every rule
// carries a "weft: ..." comment.
//
// It runs the iptables binary through go-iptables, with the xtables lock wait, so whatever
// `iptables` is on the host (nft or legacy) is used. It starts no goroutine: every command
// runs on the calling goroutine, in the network namespace of its thread, so a caller locked
// into a namespace (pkg/nsutil.Do) keeps every change there.
//
// A pass lists each chain once and compares it with the rules wanted; only differences are
// written (check, then fix), so a pass that finds everything right changes nothing. The
// differences of a chain are written by one `iptables-restore --noflush` run (one process,
// one atomic commit) however many rules they touch, rule by rule only where that is missing
// or fails. The tunnel chain accepts peers by CIDR block where their addresses fill one, so
// nodes numbered in a row need a few rules, not one each.
package iptables

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"sync"
	"time"

	goipt "github.com/coreos/go-iptables/iptables"
	"k8s.io/klog/v2"
)

// DefaultResync is how often Run re-checks the rules when Options.Resync is not set
// (flanneld's --iptables-resync default).
const DefaultResync = 5 * time.Second

// lockWaitSeconds bounds the wait for the xtables lock (iptables --wait N), so that a pass
// fails and is retried rather than hanging behind a stuck lock holder.
const lockWaitSeconds = 10

// ErrNoIPTables is returned by New when there is no iptables binary on PATH.
var ErrNoIPTables = errors.New("iptables binary not found (install the iptables package, nft or legacy)")

// Options says which rules weft keeps.
type Options struct {
	// IPMasq keeps flanneld's masquerade rules in nat WEFT-POSTRTG. When false, a chain left
	// by an earlier run with masquerading on is removed.
	IPMasq bool
	// ForwardRules keeps the ACCEPT rules for the overlay network in filter WEFT-FWD. When
	// false, a chain left by an earlier run is removed.
	ForwardRules bool
	// RestrictTunnelPort ends filter WEFT-INPUT with a DROP of tunnel traffic from anyone
	// but the current peers.
	RestrictTunnelPort bool
	// Resync is the period of Run's re-check; DefaultResync when zero or negative.
	Resync time.Duration
	// OnRepair, if set, is called when a pass puts back rules or a jump that were in place
	// before and were deleted or changed by someone else (not for changes weft asked for).
	OnRepair func()
}

// Manager installs and repairs weft's iptables rules.
//
// The setters may be called from any goroutine at any time; they wake Run for a prompt pass.
// Sync and Cleanup may be called from any goroutine but run iptables in that goroutine's
// thread's namespace; passes are serialised. A chain whose inputs are not known yet (no
// SetNetwork, or no SetTunnelPort for WEFT-INPUT) is left as it is, so the rules of a
// previous run keep traffic flowing until the new ones are known.
type Manager struct {
	ipt  runner
	opts Options
	log  klog.Logger
	kick chan struct{} // capacity 1: a pending request for a prompt pass

	mu    sync.Mutex         // guards in and dirty
	in    state              // the setters replace in.peers, never modify it in place
	dirty map[*chainDef]bool // chains whose inputs changed since the last pass over them

	syncMu          sync.Mutex // serialises passes; guards the fields below
	randomFully     bool       // use MASQUERADE --random-fully
	noRestore       bool       // iptables-restore is missing or unusable: edit rule by rule
	restoreFailures int        // restores failed in a row where rule-by-rule edits worked
	listed          map[string]string
	removed         map[*chainDef]bool       // chains known to be gone, so a remove needs no command
	applied         map[*chainDef][]string   // the rules each chain had after its last good pass
	unlearned       map[*chainDef][][]string // rules written by the last edits, until a listing shows them
}

// New finds the iptables binary and returns a Manager. It changes nothing.
func New(opts Options, log klog.Logger) (*Manager, error) {
	ipt, err := goipt.New(goipt.Timeout(lockWaitSeconds))
	if errors.Is(err, exec.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", ErrNoIPTables, err)
	}
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	v1, v2, v3 := ipt.GetIptablesVersion()
	log.V(1).Info("iptables found", "version", fmt.Sprintf("%d.%d.%d", v1, v2, v3))
	if !ipt.HasRandomFully() {
		log.Info("iptables is older than 1.6.2 and lacks --random-fully; masquerading without it",
			"version", fmt.Sprintf("%d.%d.%d", v1, v2, v3))
	}
	return newManager(newCmdRunner(ipt, "iptables"), ipt.HasRandomFully(), opts, log), nil
}

func newManager(r runner, randomFully bool, opts Options, log klog.Logger) *Manager {
	if opts.Resync <= 0 {
		opts.Resync = DefaultResync
	}
	return &Manager{
		ipt:         r,
		opts:        opts,
		log:         log,
		kick:        make(chan struct{}, 1),
		dirty:       map[*chainDef]bool{},
		randomFully: randomFully,
		listed:      map[string]string{},
		removed:     map[*chainDef]bool{},
		unlearned:   map[*chainDef][][]string{},
	}
}

// SetNetwork sets the overlay network and this node's subnet (host bits are ignored).
func (m *Manager) SetNetwork(network, ownSubnet netip.Prefix) {
	m.update([]*chainDef{&natDef, &forwardDef}, func(s *state) bool {
		if s.network == network && s.subnet == ownSubnet {
			return false
		}
		s.network, s.subnet = network, ownSubnet
		return true
	})
}

// SetTunnelPort sets the encapsulation the INPUT rules match: TunnelUDP with a port, or
// TunnelGRE (IP protocol 47, port ignored). An empty proto means the backend has no tunnel,
// and WEFT-INPUT is removed. Other values make Sync report an ErrInvalid error.
func (m *Manager) SetTunnelPort(proto string, port int) {
	if proto != TunnelUDP {
		port = 0
	}
	m.update([]*chainDef{&inputDef}, func(s *state) bool {
		if s.tunnelSet && s.tunnelProto == proto && s.tunnelPort == port {
			return false
		}
		s.tunnelSet, s.tunnelProto, s.tunnelPort = true, proto, port
		return true
	})
}

// SetPeers sets the public addresses of the current peers; the INPUT chain accepts tunnel
// traffic from these. Order and duplicates do not matter; non-IPv4 addresses are ignored.
func (m *Manager) SetPeers(publicIPs []netip.Addr) {
	peers := peerSet(publicIPs)
	m.update([]*chainDef{&inputDef}, func(s *state) bool {
		if slices.Equal(s.peers, peers) {
			return false
		}
		s.peers = peers
		return true
	})
}

// update applies change to the inputs and, if it changed them, marks the chains defs as
// due and wakes Run.
func (m *Manager) update(defs []*chainDef, change func(*state) bool) {
	m.mu.Lock()
	changed := change(&m.in)
	if changed {
		for _, d := range defs {
			m.dirty[d] = true
		}
	}
	m.mu.Unlock()
	if changed {
		select {
		case m.kick <- struct{}{}:
		default: // a pass is already pending
		}
	}
}

// Run makes one pass at once, then one every Resync period and soon after each setter
// call that changed something, until ctx ends; it then returns nil. A pass woken by a
// setter handles only the chains whose inputs changed (new peers: WEFT-INPUT alone, which
// is what a joining node waits for); a periodic pass checks them all. A failed pass is
// logged (once per distinct failure) and retried at the next period. Run calls nothing in
// another goroutine, so every command runs in the namespace of the caller's thread. Do not
// run two Runs of one Manager at once.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.opts.Resync)
	defer t.Stop()
	var failing string // text of the last failure logged; only used to not repeat a log line
	full := true
	for ctx.Err() == nil {
		var err error
		if full {
			err = m.Sync()
		} else {
			err = m.pass(false)
		}
		switch {
		case err != nil && err.Error() != failing:
			m.log.Error(err, "iptables sync failed; retrying", "resync", m.opts.Resync)
			failing = err.Error()
		case err == nil && failing != "":
			m.log.Info("iptables sync succeeded again")
			failing = ""
		}
		select {
		case <-ctx.Done():
		case <-t.C:
			full = true
		case <-m.kick:
			// A failed pass is retried in full at the next period; until then only
			// what changes is handled.
			full = false
		}
	}
	return nil
}

// Sync makes one pass over weft's chains now: each chain whose inputs are known is made to
// hold exactly its rules and to be jumped to; a chain whose feature is off is removed. The
// chains are independent: one failing does not stop the others; all failures are returned.
func (m *Manager) Sync() error { return m.pass(true) }

// pass is Sync over every chain (all) or over the chains marked due (dirty) only.
func (m *Manager) pass(all bool) error {
	m.mu.Lock()
	s := m.in
	due := m.dirty
	m.dirty = map[*chainDef]bool{}
	m.mu.Unlock()

	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	var errs []error
	var failed []*chainDef
	for _, p := range desired(m.opts, s, m.randomFully) {
		if !all && !due[p.def] {
			continue
		}
		var err error
		switch {
		case p.action == leave:
			err = p.err
		case p.action == remove && !m.removed[p.def]:
			if err = m.removeChainLocked(p.def); err == nil {
				m.removed[p.def] = true
			}
		case p.action == manage:
			delete(m.removed, p.def)
			err = m.syncChainLocked(p.def, p.rules)
			if err != nil && p.def == &natDef {
				err = m.retryWithoutRandomFullyLocked(s, err)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("iptables %s %s: %w", p.def.table, p.def.name, err))
			failed = append(failed, p.def)
		}
	}
	if len(failed) > 0 { // retried by the next pass, even one for other chains' changes
		m.mu.Lock()
		for _, d := range failed {
			m.dirty[d] = true
		}
		m.mu.Unlock()
	}
	return errors.Join(errs...)
}

// retryWithoutRandomFullyLocked handles a kernel or iptables that refuses MASQUERADE
// --random-fully although the version suggests it works: if the rule that failed had the
// option and the chain syncs without it, masquerading goes on without it from now on.
// Otherwise the original error stands.
func (m *Manager) retryWithoutRandomFullyLocked(s state, err error) error {
	var ee *editError
	if !m.randomFully || !errors.As(err, &ee) || !slices.Contains(ee.rule, "--random-fully") {
		return err
	}
	rules, rerr := natRules(s.network, s.subnet, false)
	if rerr != nil {
		return err
	}
	if m.syncChainLocked(&natDef, rules) != nil {
		return err
	}
	m.randomFully = false
	m.log.Info("iptables refused MASQUERADE --random-fully; masquerading without it", "reason", err.Error())
	return nil
}

// Cleanup removes weft's jump rules and chains (a backend's teardown). It is not for an
// ordinary stop: rules left in place keep traffic flowing while weft restarts. Call it after
// Run has returned, or Run puts the rules back; it runs in the caller's thread's namespace.
func (m *Manager) Cleanup() error {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	var errs []error
	for _, def := range chainDefs {
		if err := m.removeChainLocked(def); err != nil {
			errs = append(errs, fmt.Errorf("iptables %s %s: %w", def.table, def.name, err))
			continue
		}
		m.removed[def] = true
	}
	return errors.Join(errs...)
}
