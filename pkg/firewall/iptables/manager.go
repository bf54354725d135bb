// Package iptables is weft's firewall in iptables mode: flanneld's masquerade and forward
// rules and the tunnel-port rules, each in a chain weft owns (WEFT-POSTRTG in nat, WEFT-FWD
// and WEFT-INPUT in filter), reached by one jump rule from POSTROUTING, FORWARD and INPUT,
// and the ipset weft-peers (hash:ip) that the tunnel rule matches. Outside its own chains
// and set it adds and removes those jump rules and nothing else; every rule carries a
// "weft: ..." comment. It renders the shared plan of package firewall; what the rules are
// is decided there.
//
// It runs the iptables binary through go-iptables, with the xtables lock wait. Find picks
// the binary the way kubernetes-sigs/iptables-wrappers does: iptables-legacy or
// iptables-nft, whichever holds the host's (kubelet's, kube-proxy's, weft's) rules, so that
// weft's rules land where kube-proxy's are. The set is kept through netlink
// (github.com/vishvananda/netlink), no ipset binary needed. Nothing here starts a
// goroutine: every command runs on the calling goroutine, in the network namespace of its
// thread, so a caller locked into a namespace (pkg/nsutil.Do) keeps every change there.
//
// A pass lists each chain once and compares it with the rules wanted; only differences are
// written (check, then fix), so a pass that finds everything right changes nothing. The
// differences of a chain are written by one `iptables-restore --noflush` run (one process,
// one atomic commit) however many rules they touch, rule by rule only where that is missing
// or fails. The peers are members of the set, added and removed one by one as they come and
// go: one rule for any number of peers. Without ip_set in the kernel the tunnel chain
// accepts peers by CIDR block instead.
package iptables

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/pkg/firewall"
)

// lockWaitSeconds bounds the wait for the xtables lock (iptables --wait N), so that a pass
// fails and is retried rather than hanging behind a stuck lock holder.
const lockWaitSeconds = 10

// Manager installs and repairs weft's iptables rules and ipset; it is a firewall.Firewall.
//
// The setters (of the embedded Tracker) may be called from any goroutine at any time; they
// wake Run for a prompt pass. Sync and Cleanup may be called from any goroutine but run
// iptables in that goroutine's thread's namespace; passes are serialised. A chain whose
// inputs are not known yet (no SetNetwork, or no SetTunnelPort for WEFT-INPUT) is left as
// it is, so the rules of a previous run keep traffic flowing until the new ones are known.
type Manager struct {
	*firewall.Tracker
	ipt  runner
	sets ipsets
	opts Options
	log  klog.Logger

	syncMu          sync.Mutex // serialises passes; guards the fields below
	randomFully     bool       // use MASQUERADE --random-fully
	noIPSet         bool       // the set cannot be created: one tunnel rule per block of peers
	noRestore       bool       // iptables-restore is missing or unusable: edit rule by rule
	restoreFailures int        // restores failed in a row where rule-by-rule edits worked
	listed          map[string]string
	removed         map[*chainDef]bool       // chains known to be gone, so a remove needs no command
	applied         map[*chainDef][]string   // the rules each chain had after its last good pass
	unlearned       map[*chainDef][][]string // rules written by the last edits, until a listing shows them
	appliedPeers    []netip.Addr             // the set's members after its last good pass
	peersApplied    bool                     // appliedPeers is known
}

var _ firewall.Firewall = (*Manager)(nil)

// New returns a Manager that runs the iptables front end tool (Find). It changes nothing.
func New(tool *Tool, opts Options, log klog.Logger) *Manager {
	if !tool.ipt.HasRandomFully() && !opts.DisableFullyRandom {
		v1, v2, v3 := tool.ipt.GetIptablesVersion()
		log.Info("iptables is older than 1.6.2 and lacks --random-fully; masquerading without it",
			"version", fmt.Sprintf("%d.%d.%d", v1, v2, v3))
	}
	return newManager(tool.runner(), netlinkSets{}, tool.ipt.HasRandomFully(), opts, log)
}

func newManager(r runner, sets ipsets, randomFully bool, opts Options, log klog.Logger) *Manager {
	return &Manager{
		Tracker:     firewall.NewTracker(),
		ipt:         r,
		sets:        sets,
		opts:        opts.WithDefaults(),
		log:         log,
		randomFully: randomFully,
		listed:      map[string]string{},
		removed:     map[*chainDef]bool{},
		unlearned:   map[*chainDef][][]string{},
	}
}

// Run implements firewall.Firewall: a pass woken by a setter handles only the chains whose
// inputs changed (new peers: the set alone, which is what a joining node waits for); a
// periodic pass checks them all.
func (m *Manager) Run(ctx context.Context) error {
	l := firewall.Loop{Tracker: m.Tracker, Resync: m.opts.Resync, Pass: m.pass,
		Replaces: m.opts.Replaces, Log: m.log, What: "iptables"}
	return l.Run(ctx)
}

// Sync makes one pass over weft's chains now: each chain whose inputs are known is made to
// hold exactly its rules and to be jumped to; a chain whose feature is off is removed. The
// chains are independent: one failing does not stop the others; all failures are returned.
func (m *Manager) Sync() error { return m.pass(true) }

// capsLocked is what this iptables and kernel can do, as far as is known.
func (m *Manager) capsLocked() caps {
	return caps{randomFully: m.randomFully, ipset: !m.noIPSet}
}

// pass is Sync over every chain (all) or over the chains marked due only.
func (m *Manager) pass(all bool) error {
	in, due := m.Take()

	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	var errs []error
	var failed []firewall.Part
	for _, p := range desired(m.opts, in, m.capsLocked()) {
		if !all && !due[p.def.part] {
			continue
		}
		var err error
		switch {
		case p.action == firewall.Leave:
			err = p.err
		case p.action == firewall.Remove && !m.removed[p.def]:
			if err = m.removeChainLocked(p.def); err == nil && p.def == &inputDef {
				err = m.destroySetLocked()
			}
			if err == nil {
				m.removed[p.def] = true
			}
		case p.action == firewall.Manage:
			delete(m.removed, p.def)
			if p.def == &inputDef {
				err = m.syncInputLocked(in, p)
				break
			}
			err = m.syncChainLocked(p.def, p.rules)
			if err != nil && p.def == &natDef {
				err = m.retryWithoutRandomFullyLocked(in, err)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("iptables %s %s: %w", p.def.table, p.def.name, err))
			failed = append(failed, p.def.part)
		}
	}
	// Retried by the next pass, even one for other chains' changes.
	m.Redo(failed)
	return errors.Join(errs...)
}

// syncInputLocked keeps the set of peers, then the tunnel chain that matches it. When the
// set cannot be created (no ip_set in the kernel), it says so once and renders the chain
// with one rule per block of peers from then on.
func (m *Manager) syncInputLocked(in firewall.Inputs, p chainPlan) error {
	if !m.noIPSet {
		changed, err := m.syncSetLocked(p.peers)
		switch {
		case errors.Is(err, errNoIPSet):
			m.noIPSet = true
			m.log.Info("The kernel refuses ipsets; admitting peers with one rule per block of addresses", "reason", err.Error())
			p = desired(m.opts, in, m.capsLocked())[2]
		case err != nil:
			m.peersApplied = false
			return err
		default:
			if changed && m.peersApplied && slices.Equal(m.appliedPeers, p.peers) {
				m.log.Info("ipset repaired", "set", PeerSet, "members", len(p.peers))
				m.repaired()
			}
			m.appliedPeers, m.peersApplied = p.peers, true
		}
	}
	return m.syncChainLocked(&inputDef, p.rules)
}

// destroySetLocked deletes the set, if there is one (after the rule using it is gone).
func (m *Manager) destroySetLocked() error {
	m.appliedPeers, m.peersApplied = nil, false
	if _, ok, err := m.sets.List(PeerSet); err != nil || !ok {
		return nil // no set, or no ip_set to hold one
	}
	if err := m.sets.Destroy(PeerSet); err != nil {
		return err
	}
	m.log.Info("ipset removed", "set", PeerSet)
	return nil
}

// retryWithoutRandomFullyLocked handles a kernel or iptables that refuses MASQUERADE
// --random-fully although the version suggests it works: if the rule that failed had the
// option and the chain syncs without it, masquerading goes on without it from now on.
// Otherwise the original error stands.
func (m *Manager) retryWithoutRandomFullyLocked(in firewall.Inputs, err error) error {
	var ee *editError
	if !m.randomFully || !errors.As(err, &ee) || !slices.Contains(ee.rule, "--random-fully") {
		return err
	}
	plain := m.capsLocked()
	plain.randomFully = false
	rules := desired(m.opts, in, plain)[0].rules
	if m.syncChainLocked(&natDef, rules) != nil {
		return err
	}
	m.randomFully = false
	m.log.Info("iptables refused MASQUERADE --random-fully; masquerading without it", "reason", err.Error())
	return nil
}

// Cleanup removes weft's jump rules, chains and set (a backend's teardown, or a switch to
// nftables mode). It is not for an ordinary stop: rules left in place keep traffic flowing
// while weft restarts. Call it after Run has returned, or Run puts the rules back; it runs
// in the caller's thread's namespace.
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
	if len(errs) == 0 { // the set is in use until the tunnel chain is gone
		if err := m.destroySetLocked(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
