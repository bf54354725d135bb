// Package iptables is weft's firewall in iptables mode: flanneld's masquerade and forward
// rules and the tunnel-port rules, each in a chain weft owns (WEFT-POSTRTG in nat, WEFT-FWD
// and WEFT-INPUT in filter), reached by one jump rule from POSTROUTING, FORWARD and INPUT,
// and the ipset weft-peers (hash:ip) that the tunnel rule matches. For an IPv6 network the
// same chains and rules, with the IPv6 network and subnet, are kept with ip6tables, and
// the tunnel rule matches the ipset weft-peers6 (hash:ip family inet6); each family's rules
// exist only while the network runs it. Outside its own chains
// and set it adds and removes those jump rules and nothing else; every rule carries a
// "weft: ..." comment. It renders the shared plan of package firewall; what the rules are
// is decided there.
//
// It runs the iptables and ip6tables binaries through go-iptables, with the xtables lock
// wait. Find picks the binaries the way kubernetes-sigs/iptables-wrappers does:
// iptables-legacy and ip6tables-legacy or the -nft ones, whichever hold the host's
// (kubelet's, kube-proxy's, weft's) rules, so that weft's rules land where kube-proxy's are. The set is kept through netlink
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

// Manager installs and repairs weft's iptables and ip6tables rules and ipsets; it is a
// firewall.Firewall.
//
// The setters (of the embedded Tracker) may be called from any goroutine at any time; they
// wake Run for a prompt pass. Sync and Cleanup may be called from any goroutine but run
// iptables in that goroutine's thread's namespace; passes are serialised. A chain whose
// inputs are not known yet (no SetNetwork, or no SetTunnelPort for WEFT-INPUT) is left as
// it is, so the rules of a previous run keep traffic flowing until the new ones are known.
type Manager struct {
	*firewall.Tracker
	*stack // IPv4: iptables and weft-peers (embedded: the IPv4 state is the tests' usual view)
	opts   Options
	log    klog.Logger

	syncMu sync.Mutex // serialises passes; guards the stacks' fields
	v6     *stack     // IPv6: ip6tables and weft-peers6; its ipt is nil without ip6tables
}

// stack is weft's rules of one IP family: the tool that writes them, the set of peers, and
// what the passes learned. Every field but the first six is guarded by Manager.syncMu.
type stack struct {
	fam  firewall.Family
	ipt  runner // nil: no such tool on this host (ip6tables missing)
	sets ipsets
	set  string // PeerSet or PeerSet6
	opts Options
	log  klog.Logger

	randomFully     bool // use MASQUERADE --random-fully
	noIPSet         bool // the set cannot be created: one tunnel rule per block of peers
	noRestore       bool // iptables-restore is missing or unusable: edit rule by rule
	restoreFailures int  // restores failed in a row where rule-by-rule edits worked
	listed          map[string]string
	removed         map[*chainDef]bool       // chains known to be gone, so a remove needs no command
	applied         map[*chainDef][]string   // the rules each chain had after its last good pass
	unlearned       map[*chainDef][][]string // rules written by the last edits, until a listing shows them
	appliedPeers    []netip.Addr             // the set's members after its last good pass
	peersApplied    bool                     // appliedPeers is known
}

var _ firewall.Firewall = (*Manager)(nil)

// ErrNoIP6Tables is reported by a pass that has IPv6 rules to write on a host without
// ip6tables.
var ErrNoIP6Tables = errors.New("ip6tables binary not found (the network runs IPv6)")

// New returns a Manager that runs the iptables and ip6tables front ends of tool (Find). It
// changes nothing.
func New(tool *Tool, opts Options, log klog.Logger) *Manager {
	if !tool.ipt.HasRandomFully() && !opts.DisableFullyRandom {
		v1, v2, v3 := tool.ipt.GetIptablesVersion()
		log.Info("iptables is older than 1.6.2 and lacks --random-fully; masquerading without it",
			"version", fmt.Sprintf("%d.%d.%d", v1, v2, v3))
	}
	m := newManager(tool.runner(), netlinkSets{}, tool.ipt.HasRandomFully(), opts, log)
	if tool.ipt6 != nil {
		m.setIPv6(tool.runner6(), tool.ipt6.HasRandomFully())
	}
	return m
}

// newManager returns a Manager writing IPv4 rules with r; its IPv6 rules need setIPv6.
func newManager(r runner, sets ipsets, randomFully bool, opts Options, log klog.Logger) *Manager {
	opts = opts.WithDefaults()
	return &Manager{
		Tracker: firewall.NewTracker(),
		stack:   newStack(firewall.IPv4, r, sets, randomFully, opts, log),
		v6:      newStack(firewall.IPv6, nil, sets, false, opts, log),
		opts:    opts,
		log:     log,
	}
}

// setIPv6 makes the Manager write its IPv6 rules with r (ip6tables). Call it before the
// first pass.
func (m *Manager) setIPv6(r runner, randomFully bool) {
	m.v6 = newStack(firewall.IPv6, r, m.sets, randomFully, m.opts, m.log)
}

func newStack(f firewall.Family, r runner, sets ipsets, randomFully bool, opts Options, log klog.Logger) *stack {
	return &stack{
		fam:         f,
		ipt:         r,
		sets:        sets,
		set:         setName(f),
		opts:        opts,
		log:         log.WithValues("family", f.String()),
		randomFully: randomFully,
		listed:      map[string]string{},
		removed:     map[*chainDef]bool{},
		unlearned:   map[*chainDef][][]string{},
	}
}

// stacks returns the IPv4 and the IPv6 stack, in the order a pass handles them.
func (m *Manager) stacks() [firewall.NumFamilies]*stack {
	return [firewall.NumFamilies]*stack{m.stack, m.v6}
}

// Run implements firewall.Firewall: a pass woken by a setter handles only the chains whose
// inputs changed (new peers: the sets alone, which is what a joining node waits for); a
// periodic pass checks them all.
func (m *Manager) Run(ctx context.Context) error {
	l := firewall.Loop{Tracker: m.Tracker, Resync: m.opts.Resync, Pass: m.pass,
		Replaces: m.opts.Replaces, Log: m.log, What: "iptables"}
	return l.Run(ctx)
}

// Sync makes one pass over weft's chains of both families now: each chain whose inputs are
// known is made to hold exactly its rules and to be jumped to; a chain whose feature is
// off, or whose family the network does not run, is removed. The chains are independent:
// one failing does not stop the others; all failures are returned.
func (m *Manager) Sync() error { return m.pass(true) }

// capsLocked is what this iptables and kernel can do, as far as is known.
func (s *stack) capsLocked() caps {
	return caps{family: s.fam, randomFully: s.randomFully, ipset: !s.noIPSet}
}

// pass is Sync over every chain (all) or over the chains marked due only.
func (m *Manager) pass(all bool) error {
	in, due := m.Take()

	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	var errs []error
	var failed []firewall.Part
	for _, s := range m.stacks() {
		e, f := s.passLocked(in, due, all)
		errs, failed = append(errs, e...), append(failed, f...)
	}
	// Retried by the next pass, even one for other chains' changes.
	m.Redo(failed)
	return errors.Join(errs...)
}

// passLocked is one family's share of a pass: it returns the failures and the parts that
// failed.
func (s *stack) passLocked(in firewall.Inputs, due [firewall.NumParts]bool, all bool) (errs []error, failed []firewall.Part) {
	for _, p := range desired(s.opts, in, s.capsLocked()) {
		if !all && !due[p.def.part] {
			continue
		}
		var err error
		switch {
		case p.action == firewall.Leave:
			err = p.err
		case s.ipt == nil:
			// No ip6tables: nothing of weft's can be there to remove, and nothing can be
			// written.
			if p.action == firewall.Manage {
				err = ErrNoIP6Tables
			}
		case p.action == firewall.Remove && !s.removed[p.def]:
			if err = s.removeChainLocked(p.def); err == nil && p.def == &inputDef {
				err = s.destroySetLocked()
			}
			if err == nil {
				s.removed[p.def] = true
			}
		case p.action == firewall.Manage:
			delete(s.removed, p.def)
			if p.def == &inputDef {
				err = s.syncInputLocked(in, p)
				break
			}
			err = s.syncChainLocked(p.def, p.rules)
			if err != nil && p.def == &natDef {
				err = s.retryWithoutRandomFullyLocked(in, err)
			}
		}
		if err != nil && p.action == firewall.Remove && s.fam == firewall.IPv6 && !in.Overlay.Runs(firewall.IPv6) {
			// Not an IPv6 network: there is nothing of this run's to remove, and on a
			// kernel without IPv6 ip6tables cannot even look. Leftovers of an earlier run
			// that cannot be looked at are left (Cleanup still reports the failure).
			s.log.V(1).Info("Cannot look for IPv6 rules to remove; the network does not run IPv6", "chain", p.def.name, "reason", err.Error())
			s.removed[p.def], err = true, nil
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s %s: %w", s.tool(), p.def.table, p.def.name, err))
			failed = append(failed, p.def.part)
		}
	}
	return errs, failed
}

// tool names the family's binary, for errors.
func (s *stack) tool() string {
	if s.fam == firewall.IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

// syncInputLocked keeps the set of peers, then the tunnel chain that matches it. When the
// set cannot be created (no ip_set in the kernel), it says so once and renders the chain
// with one rule per block of peers from then on.
func (s *stack) syncInputLocked(in firewall.Inputs, p chainPlan) error {
	if !s.noIPSet {
		changed, err := s.syncSetLocked(p.peers)
		switch {
		case errors.Is(err, errNoIPSet):
			s.noIPSet = true
			s.log.Info("The kernel refuses ipsets; admitting peers with one rule per block of addresses", "reason", err.Error())
			p = desired(s.opts, in, s.capsLocked())[2]
		case err != nil:
			s.peersApplied = false
			return err
		default:
			if changed && s.peersApplied && slices.Equal(s.appliedPeers, p.peers) {
				s.log.Info("ipset repaired", "set", s.set, "members", len(p.peers))
				s.repaired()
			}
			s.appliedPeers, s.peersApplied = p.peers, true
		}
	}
	return s.syncChainLocked(&inputDef, p.rules)
}

// destroySetLocked deletes the set, if there is one (after the rule using it is gone).
func (s *stack) destroySetLocked() error {
	s.appliedPeers, s.peersApplied = nil, false
	if _, ok, err := s.sets.List(s.set); err != nil || !ok {
		return nil // no set, or no ip_set to hold one
	}
	if err := s.sets.Destroy(s.set); err != nil {
		return err
	}
	s.log.Info("ipset removed", "set", s.set)
	return nil
}

// retryWithoutRandomFullyLocked handles a kernel or iptables that refuses MASQUERADE
// --random-fully although the version suggests it works: if the rule that failed had the
// option and the chain syncs without it, masquerading goes on without it from now on.
// Otherwise the original error stands.
func (s *stack) retryWithoutRandomFullyLocked(in firewall.Inputs, err error) error {
	var ee *editError
	if !s.randomFully || !errors.As(err, &ee) || !slices.Contains(ee.rule, "--random-fully") {
		return err
	}
	plain := s.capsLocked()
	plain.randomFully = false
	rules := desired(s.opts, in, plain)[0].rules
	if s.syncChainLocked(&natDef, rules) != nil {
		return err
	}
	s.randomFully = false
	s.log.Info("iptables refused MASQUERADE --random-fully; masquerading without it", "reason", err.Error())
	return nil
}

// Cleanup removes weft's jump rules, chains and sets of both families (a backend's
// teardown, or a switch to nftables mode). It is not for an ordinary stop: rules left in
// place keep traffic flowing while weft restarts. Call it after Run has returned, or Run
// puts the rules back; it runs in the caller's thread's namespace.
func (m *Manager) Cleanup() error {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	var errs []error
	for _, s := range m.stacks() {
		if s.ipt != nil {
			errs = append(errs, s.cleanupLocked())
		}
	}
	return errors.Join(errs...)
}

func (s *stack) cleanupLocked() error {
	var errs []error
	for _, def := range chainDefs {
		if err := s.removeChainLocked(def); err != nil {
			errs = append(errs, fmt.Errorf("%s %s %s: %w", s.tool(), def.table, def.name, err))
			continue
		}
		s.removed[def] = true
	}
	if len(errs) == 0 { // the set is in use until the tunnel chain is gone
		if err := s.destroySetLocked(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
