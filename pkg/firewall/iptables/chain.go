package iptables

import (
	"errors"
	"fmt"
	"slices"
)

// runner is the part of go-iptables' *iptables.IPTables that weft uses. Every method runs
// the iptables binary once (ClearAndDeleteChain up to three times) with the xtables lock
// wait, in the network namespace of the calling thread.
type runner interface {
	List(table, chain string) ([]string, error)
	ChainExists(table, chain string) (bool, error)
	NewChain(table, chain string) error
	Exists(table, chain string, spec ...string) (bool, error)
	Insert(table, chain string, pos int, spec ...string) error
	Append(table, chain string, spec ...string) error
	Replace(table, chain string, pos int, spec ...string) error
	DeleteById(table, chain string, pos int) error
	Delete(table, chain string, spec ...string) error
	ClearAndDeleteChain(table, chain string) error
	// Restore runs iptables-restore --noflush once with lines for table, as one
	// transaction (all or nothing); ErrNoRestore when there is no iptables-restore.
	Restore(table string, lines []string) error
}

// syncChainLocked makes weft's chain hold exactly rules, and the built-in chain jump to it.
// When everything is right it costs two iptables runs (list the chain, check the jump) and
// changes nothing; edits add one run (one iptables-restore however many rules change).
// Called with m.syncMu held.
func (m *Manager) syncChainLocked(def *chainDef, rules [][]string) error {
	have, err := m.listChainLocked(def)
	if err != nil {
		return err
	}
	if written, ok := m.unlearned[def]; ok {
		delete(m.unlearned, def)
		m.learnLocked(def, have, written)
	}
	want := make([]string, len(rules))
	for i, r := range rules {
		want[i] = m.expectedLocked(r)
	}
	prev, wasApplied := m.applied[def]
	repairing := wasApplied && slices.Equal(prev, want) // same wish as last time: someone else changed it
	if edits := planEdits(have, want); len(edits) > 0 {
		if err := m.applyAllLocked(def, edits, rules); err != nil {
			return err
		}
		m.log.Info("iptables chain updated", "table", def.table, "chain", def.name,
			"edits", len(edits), "rules", len(rules), "repair", repairing)
		m.unlearned[def] = rules // the next pass's listing shows how iptables lists them
		if repairing {
			m.repaired()
		}
	}
	if m.applied == nil {
		m.applied = map[*chainDef][]string{}
	}
	m.applied[def] = want

	ok, err := m.ipt.Exists(def.table, def.hook, def.jump...)
	if err != nil {
		return fmt.Errorf("check jump %s -> %s: %w", def.hook, def.name, err)
	}
	if ok {
		return nil
	}
	if def.first {
		err = m.ipt.Insert(def.table, def.hook, 1, def.jump...)
	} else {
		err = m.ipt.Append(def.table, def.hook, def.jump...)
	}
	if err != nil {
		return fmt.Errorf("add jump %s -> %s: %w", def.hook, def.name, err)
	}
	m.log.Info("iptables jump added", "table", def.table, "from", def.hook, "to", def.name, "repair", repairing)
	if repairing {
		m.repaired()
	}
	return nil
}

func (m *Manager) repaired() {
	if m.opts.OnRepair != nil {
		m.opts.OnRepair()
	}
}

// listChainLocked returns the rules of weft's chain, creating the chain when it is missing.
func (m *Manager) listChainLocked(def *chainDef) ([]string, error) {
	lines, err := m.ipt.List(def.table, def.name)
	if err == nil {
		return parseListing(def.name, lines), nil
	}
	// A missing chain is an error whose text differs between iptables versions and
	// backends; ask plainly before creating it.
	exists, cerr := m.ipt.ChainExists(def.table, def.name)
	if cerr != nil || exists {
		return nil, fmt.Errorf("list %s %s: %w", def.table, def.name, err)
	}
	if err := m.ipt.NewChain(def.table, def.name); err != nil {
		return nil, fmt.Errorf("create chain %s %s: %w", def.table, def.name, err)
	}
	m.log.Info("iptables chain created", "table", def.table, "chain", def.name)
	return nil, nil
}

// restoreStrikes is how many times in a row iptables-restore may fail where editing rule
// by rule then works (a chain changed under the restore explains one) before weft stops
// trying it.
const restoreStrikes = 3

// applyAllLocked carries out a chain's edits: several in one iptables-restore run (one
// process and one commit, where editing rule by rule costs one iptables run each, and
// thousands of peers mean thousands of runs), a single one, or those of a restore that
// failed, one by one. A failed restore changed nothing; editing one by one then names the
// rule that fails (the --random-fully fallback needs that), or, if everything works that
// way restoreStrikes times in a row, shows that this iptables-restore is unusable, and it
// is not tried again.
func (m *Manager) applyAllLocked(def *chainDef, edits []edit, rules [][]string) error {
	var restoreErr error // the failure of a restore tried for these edits
	if len(edits) > 1 && !m.noRestore {
		lines := make([]string, len(edits))
		for i, e := range edits {
			var rule []string
			if e.op != opDelete {
				rule = rules[e.want]
			}
			lines[i] = restoreLine(def.name, e, rule)
		}
		if restoreErr = m.ipt.Restore(def.table, lines); restoreErr == nil {
			m.restoreFailures = 0
			return nil
		}
		if errors.Is(restoreErr, ErrNoRestore) {
			m.noRestore = true
			m.log.Info("No iptables-restore found; editing rule by rule")
			restoreErr = nil
		}
	}
	for _, e := range edits {
		if err := m.applyLocked(def, e, rules); err != nil {
			return err
		}
	}
	if restoreErr != nil {
		if m.restoreFailures++; m.restoreFailures >= restoreStrikes {
			m.noRestore = true
			m.log.Info("iptables-restore keeps failing where iptables works; editing rule by rule from now on", "reason", restoreErr.Error())
		}
	}
	return nil
}

func (m *Manager) applyLocked(def *chainDef, e edit, rules [][]string) error {
	var rule []string
	var err error
	switch e.op {
	case opReplace:
		rule = rules[e.want]
		err = m.ipt.Replace(def.table, def.name, e.pos, rule...)
	case opInsert:
		rule = rules[e.want]
		err = m.ipt.Insert(def.table, def.name, e.pos, rule...)
	case opDelete:
		err = m.ipt.DeleteById(def.table, def.name, e.pos)
	}
	if err != nil {
		return &editError{op: e.op, pos: e.pos, rule: rule, err: err}
	}
	return nil
}

// editError is a failed edit of one of weft's chains, with the rule it tried to write.
type editError struct {
	op   editOp
	pos  int
	rule []string // nil for a delete
	err  error
}

func (e *editError) Error() string {
	if e.rule == nil {
		return fmt.Sprintf("%s rule %d: %v", e.op, e.pos, e.err)
	}
	return fmt.Sprintf("%s rule %d (%s): %v", e.op, e.pos, render(e.rule), e.err)
}

func (e *editError) Unwrap() error { return e.err }

// expectedLocked is how iptables will list rule: as render predicts, unless this iptables
// was seen to list it otherwise.
func (m *Manager) expectedLocked(rule []string) string {
	r := render(rule)
	if seen, ok := m.listed[r]; ok {
		return seen
	}
	return r
}

// learnLocked compares the listing have of a chain that was last written with rules and
// remembers, for each rule iptables lists differently from render's prediction (another
// iptables version or backend), how it is listed, so that no pass rewrites a rule that is
// right. A pass after edits does this with its own listing, before it plans (no extra
// iptables run). A listed rule is only taken as the rendering of a wanted one when the
// chain has as many rules as were written and its comment matches too.
func (m *Manager) learnLocked(def *chainDef, have []string, rules [][]string) {
	if len(have) != len(rules) {
		return
	}
	for i, r := range rules {
		predicted := render(r)
		if have[i] != predicted && have[i] != m.listed[predicted] && commentOf(have[i]) == commentOf(predicted) {
			m.log.V(1).Info("iptables lists a rule differently than predicted", "chain", def.name,
				"predicted", predicted, "listed", have[i])
			m.listed[predicted] = have[i]
		}
	}
}

// removeChainLocked deletes the jump to weft's chain (every copy) and the chain itself.
// A chain that does not exist is not an error (and then no jump to it can exist).
func (m *Manager) removeChainLocked(def *chainDef) error {
	delete(m.applied, def)
	delete(m.unlearned, def)
	exists, err := m.ipt.ChainExists(def.table, def.name)
	if err != nil {
		return fmt.Errorf("check chain %s %s: %w", def.table, def.name, err)
	}
	if !exists {
		return nil
	}
	const maxCopies = 16 // a bound, not an expectation: one jump is all weft adds
	for range maxCopies {
		ok, err := m.ipt.Exists(def.table, def.hook, def.jump...)
		if err != nil {
			return fmt.Errorf("check jump %s -> %s: %w", def.hook, def.name, err)
		}
		if !ok {
			break
		}
		if err := m.ipt.Delete(def.table, def.hook, def.jump...); err != nil {
			return fmt.Errorf("delete jump %s -> %s: %w", def.hook, def.name, err)
		}
		m.log.Info("iptables jump removed", "table", def.table, "from", def.hook, "to", def.name)
	}
	if err := m.ipt.ClearAndDeleteChain(def.table, def.name); err != nil {
		return fmt.Errorf("delete chain %s %s: %w", def.table, def.name, err)
	}
	m.log.Info("iptables chain removed", "table", def.table, "chain", def.name)
	return nil
}
