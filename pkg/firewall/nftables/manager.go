// Package nftables is weft's firewall in nftables mode (the network config's
// "EnableNFTables": true): flanneld's masquerade and forward rules and the tunnel-port
// rules in a table weft owns per IP family the network runs, "ip weft" and "ip6 weft",
// each with a base chain per part of the plan (postrouting, forward, input) and the set
// @peers of the peers' public addresses of its family, which one tunnel rule matches
// whatever the number of peers. It renders the shared plan of
// package firewall; what the rules are is decided there. It touches nothing outside its
// tables, and every rule carries a "weft: ..." comment.
//
// It speaks netlink through github.com/google/nftables: no nft binary (the image needs
// none), typed expressions, and set elements added and deleted one batch at a time. A pass
// reads a table (chains, rules, set elements), compares, and writes only differences, all
// in one nftables transaction per table: the kernel applies the batch whole or not at all. A chain
// that differs is flushed and refilled in that transaction (its few rules; the peers are in
// the set). Every netlink socket is opened on the calling goroutine's thread, so a caller
// locked into a namespace (pkg/nsutil.Do) keeps every change there; nothing here starts a
// goroutine.
package nftables

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/pkg/firewall"
)

// maxElementsPerMessage bounds the set elements one netlink message carries.
const maxElementsPerMessage = 1024

// Manager installs and repairs weft's nftables table; it is a firewall.Firewall.
//
// The setters (of the embedded Tracker) may be called from any goroutine at any time; they
// wake Run. Sync and Cleanup run in the calling thread's namespace; passes are serialised.
type Manager struct {
	*firewall.Tracker
	opts Options
	log  klog.Logger

	syncMu        sync.Mutex                     // serialises passes; guards the fields below
	noFullyRandom bool                           // the kernel refused masquerade fully-random
	fams          [firewall.NumFamilies]famState // what each family's table had after its last good pass
	writes        int                            // transactions written, for tests
}

// famState is what a pass remembers of one family's table.
type famState struct {
	// applied holds, per part, the rule keys the chain had after its last good pass (nil:
	// unknown), so that rewriting the same rules again counts as a repair.
	applied      [firewall.NumParts][]string
	appliedPeers []netip.Addr // the set's elements after its last good pass
	peersApplied bool         // appliedPeers is known
}

// Options is the shared firewall.Options.
type Options = firewall.Options

var _ firewall.Firewall = (*Manager)(nil)

// New returns a Manager. It changes nothing and needs no binary.
func New(opts Options, log klog.Logger) *Manager {
	return &Manager{Tracker: firewall.NewTracker(), opts: opts.WithDefaults(), log: log}
}

// Run implements firewall.Firewall.
func (m *Manager) Run(ctx context.Context) error {
	l := firewall.Loop{Tracker: m.Tracker, Resync: m.opts.Resync, Pass: m.pass,
		Replaces: m.opts.Replaces, Log: m.log, What: "nftables"}
	return l.Run(ctx)
}

// Sync implements firewall.Firewall: one full pass now.
func (m *Manager) Sync() error { return m.pass(true) }

// pass is Sync over every part (all) or the parts marked due only, of both families' tables.
// Parts whose inputs are unusable are reported and left alone; the others are written in
// one transaction per table, which is retried in full by the next pass if it fails.
func (m *Manager) pass(all bool) error {
	in, due := m.Take()
	if all {
		due = [firewall.NumParts]bool{true, true, true}
	}
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	var errs []error
	failed := false
	for _, f := range firewall.Families {
		err := m.passLocked(f, in, due)
		failed = failed || err != nil
		errs = append(errs, err)
	}
	if failed {
		var parts []firewall.Part
		for _, p := range firewall.Parts {
			if due[p] {
				parts = append(parts, p)
			}
		}
		m.Redo(parts)
	}
	return errors.Join(errs...)
}

// passLocked is one family's share of a pass.
func (m *Manager) passLocked(f firewall.Family, in firewall.Inputs, due [firewall.NumParts]bool) error {
	plan := firewall.Desired(m.opts, in, f)
	var errs []error
	for _, p := range plan {
		if due[p.Part] && p.Err != nil {
			errs = append(errs, fmt.Errorf("nftables %v %s: %w", f, p.Part, p.Err))
		}
	}
	err := m.syncLocked(f, plan, due, !m.noFullyRandom)
	if (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)) && !m.noFullyRandom &&
		due[firewall.Masq] && plan[firewall.Masq].Action == firewall.Manage {
		// An older kernel refuses masquerade flags it does not know (EINVAL or
		// EOPNOTSUPP for the whole transaction): go on without fully-random if that is
		// what failed.
		if m.syncLocked(f, plan, due, false) == nil {
			m.noFullyRandom = true
			m.log.Info("nftables refused masquerade fully-random; masquerading without it", "reason", err.Error())
			err = nil
		}
	}
	if err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// change is what a pass wrote for one part, for the log and the repair count.
type change struct {
	part   firewall.Part
	what   string
	repair bool
}

// syncLocked brings the due parts of weft's table of family f to plan in one transaction.
func (m *Manager) syncLocked(f firewall.Family, plan firewall.Plan, due [firewall.NumParts]bool, fullyRandom bool) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	s, err := read(c, f)
	if err != nil {
		return fmt.Errorf("nftables %v: %w", f, err)
	}
	st := &m.fams[f]
	table := &nftables.Table{Name: TableName, Family: famDefs[f].table}
	anyManaged := false
	allRemoved := true
	for _, p := range plan {
		anyManaged = anyManaged || due[p.Part] && p.Action == firewall.Manage
		allRemoved = allRemoved && p.Action == firewall.Remove
	}
	var changes []change
	switch {
	case s.table == nil && !anyManaged:
		st.forgetRemoved(plan, due)
		return nil
	case s.table != nil && allRemoved:
		// Every feature is off: the table goes, whatever is due.
		c.DelTable(table)
		changes = append(changes, change{what: "table removed"})
	default:
		if s.table == nil {
			c.AddTable(table)
			s.chains = map[string]*nftables.Chain{}
			m.log.V(1).Info("nftables table missing; creating it", "table", tableLabel(f))
		}
		for _, p := range plan {
			if !due[p.Part] {
				continue
			}
			ch, err := st.syncPart(c, f, table, s, p, fullyRandom)
			if err != nil {
				return fmt.Errorf("nftables %v %s: %w", f, p.Part, err)
			}
			changes = append(changes, ch...)
		}
	}
	if len(changes) == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		*st = famState{}
		return fmt.Errorf("nftables: write table %s: %w", tableLabel(f), err)
	}
	m.writes++
	for _, ch := range changes {
		m.log.Info("nftables updated", "table", tableLabel(f), "part", ch.part.String(), "change", ch.what, "repair", ch.repair)
		if ch.repair && m.opts.OnRepair != nil {
			m.opts.OnRepair()
		}
	}
	st.forgetRemoved(plan, due)
	return nil
}

// forgetRemoved drops what is remembered of parts that are now removed.
func (st *famState) forgetRemoved(plan firewall.Plan, due [firewall.NumParts]bool) {
	for _, p := range plan {
		if due[p.Part] && p.Action == firewall.Remove {
			st.applied[p.Part] = nil
			if p.Part == firewall.Tunnel {
				st.appliedPeers, st.peersApplied = nil, false
			}
		}
	}
}

// syncPart queues on c what part p of family f needs, given the table's state s, and
// returns what it queued. Called with Manager.syncMu held.
func (st *famState) syncPart(c *nftables.Conn, f firewall.Family, table *nftables.Table, s state, p firewall.PartPlan, fullyRandom bool) ([]change, error) {
	def := &chainDefs[p.Part]
	have := s.chains[def.name]
	var changes []change
	switch p.Action {
	case firewall.Leave:
		return nil, nil
	case firewall.Remove:
		if have != nil {
			c.DelChain(have)
			changes = append(changes, change{part: p.Part, what: "chain removed"})
		}
		if p.Part == firewall.Tunnel && s.set != nil {
			c.DelSet(s.set)
			changes = append(changes, change{part: p.Part, what: "set removed"})
		}
		return changes, nil
	}

	// The set before the rule that looks it up.
	var set *nftables.Set
	if p.Part == firewall.Tunnel {
		var ch []change
		var err error
		set, ch, err = st.syncSet(c, f, table, s, p.Peers)
		if err != nil {
			return nil, err
		}
		changes = append(changes, ch...)
		if s.set != nil && set != s.set && have != nil {
			// The old set is replaced: the chain goes with it, rules and all.
			have = nil
		}
	}

	rules := make([]*nftables.Rule, len(p.Rules))
	want := make([]string, len(p.Rules))
	for i, r := range p.Rules {
		rules[i] = &nftables.Rule{Table: table, Exprs: ruleExprs(f, r, set, fullyRandom), UserData: comment(r.Comment)}
		k, err := ruleKey(f, rules[i].Exprs, rules[i].UserData)
		if err != nil {
			return nil, err
		}
		want[i] = k
	}
	repair := st.applied[p.Part] != nil && slices.Equal(st.applied[p.Part], want)
	st.applied[p.Part] = want

	var chain *nftables.Chain
	switch {
	case have == nil || !def.matches(have):
		if have != nil {
			c.DelChain(have)
		}
		chain = c.AddChain(def.chain(table))
		changes = append(changes, change{part: p.Part, what: "chain created", repair: repair})
	default:
		got, err := c.GetRules(table, have)
		if err != nil {
			return nil, fmt.Errorf("list rules of %s: %w", def.name, err)
		}
		keys := make([]string, len(got))
		for i, r := range got {
			if keys[i], err = ruleKey(f, r.Exprs, r.UserData); err != nil {
				return nil, err
			}
		}
		if slices.Equal(keys, want) {
			return changes, nil
		}
		chain = have
		c.FlushChain(have)
		changes = append(changes, change{part: p.Part, what: fmt.Sprintf("chain rewritten (%d rules)", len(want)), repair: repair})
	}
	for _, r := range rules {
		r.Chain = chain
		c.AddRule(r)
	}
	return changes, nil
}

// syncSet queues what makes the peer set of family f hold exactly peers: the set with them
// when it is missing (or not a set of addresses of f), else the elements to add and
// delete. It returns the set the tunnel rule is to look up.
func (st *famState) syncSet(c *nftables.Conn, f firewall.Family, table *nftables.Table, s state, peers []netip.Addr) (*nftables.Set, []change, error) {
	repair := st.peersApplied && slices.Equal(st.appliedPeers, peers)
	st.appliedPeers, st.peersApplied = peers, true
	set := s.set
	key := famDefs[f].key
	if set != nil && set.KeyType.Name != key.Name {
		if ch := s.chains[chainDefs[firewall.Tunnel].name]; ch != nil {
			c.DelChain(ch) // it may look the set up
		}
		c.DelSet(set)
		set = nil
	}
	if set == nil {
		set = &nftables.Set{Table: table, Name: SetName, KeyType: key}
		els := addrElements(peers)
		first := els[:min(len(els), maxElementsPerMessage)]
		if err := c.AddSet(set, first); err != nil {
			return nil, nil, fmt.Errorf("add set: %w", err)
		}
		if err := addElements(c, set, els[len(first):]); err != nil {
			return nil, nil, err
		}
		return set, []change{{part: firewall.Tunnel, what: fmt.Sprintf("set created (%d elements)", len(peers)), repair: repair}}, nil
	}
	els, err := c.GetSetElements(set)
	if err != nil {
		return nil, nil, fmt.Errorf("list set elements: %w", err)
	}
	add, del := firewall.Diff(elementAddrs(f, els), peers)
	if len(add)+len(del) == 0 {
		return set, nil, nil
	}
	if err := addElements(c, set, addrElements(add)); err != nil {
		return nil, nil, err
	}
	for d := addrElements(del); len(d) > 0; d = d[min(len(d), maxElementsPerMessage):] {
		if err := c.SetDeleteElements(set, d[:min(len(d), maxElementsPerMessage)]); err != nil {
			return nil, nil, fmt.Errorf("delete set elements: %w", err)
		}
	}
	return set, []change{{part: firewall.Tunnel, what: fmt.Sprintf("set: %d added, %d removed, %d elements", len(add), len(del), len(peers)), repair: repair}}, nil
}

func addElements(c *nftables.Conn, set *nftables.Set, els []nftables.SetElement) error {
	for ; len(els) > 0; els = els[min(len(els), maxElementsPerMessage):] {
		if err := c.SetAddElements(set, els[:min(len(els), maxElementsPerMessage)]); err != nil {
			return fmt.Errorf("add set elements: %w", err)
		}
	}
	return nil
}
