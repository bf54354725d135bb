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
// Called with s.syncMu held.
func (s *stack) syncChainLocked(def *chainDef, rules [][]string) error {
	have, err := s.listChainLocked(def)
	if err != nil {
		return err
	}
	if written, ok := s.unlearned[def]; ok {
		delete(s.unlearned, def)
		s.learnLocked(def, have, written)
	}
	want := make([]string, len(rules))
	for i, r := range rules {
		want[i] = s.expectedLocked(r)
	}
	prev, wasApplied := s.applied[def]
	repairing := wasApplied && slices.Equal(prev, want) // same wish as last time: someone else changed it
	if edits := planEdits(have, want); len(edits) > 0 {
		if err := s.applyAllLocked(def, edits, rules); err != nil {
			return err
		}
		s.log.Info("iptables chain updated", "table", def.table, "chain", def.name,
			"edits", len(edits), "rules", len(rules), "repair", repairing)
		s.unlearned[def] = rules // the next pass's listing shows how iptables lists them
		if repairing {
			s.repaired()
		}
	}
	if s.applied == nil {
		s.applied = map[*chainDef][]string{}
	}
	s.applied[def] = want

	ok, err := s.ipt.Exists(def.table, def.hook, def.jump...)
	if err != nil {
		return fmt.Errorf("check jump %s -> %s: %w", def.hook, def.name, err)
	}
	if ok {
		return nil
	}
	if def.first {
		err = s.ipt.Insert(def.table, def.hook, 1, def.jump...)
	} else {
		err = s.ipt.Append(def.table, def.hook, def.jump...)
	}
	if err != nil {
		return fmt.Errorf("add jump %s -> %s: %w", def.hook, def.name, err)
	}
	s.log.Info("iptables jump added", "table", def.table, "from", def.hook, "to", def.name, "repair", repairing)
	if repairing {
		s.repaired()
	}
	return nil
}

func (s *stack) repaired() {
	if s.opts.OnRepair != nil {
		s.opts.OnRepair()
	}
}

// listChainLocked returns the rules of weft's chain, creating the chain when it is missing.
func (s *stack) listChainLocked(def *chainDef) ([]string, error) {
	lines, err := s.ipt.List(def.table, def.name)
	if err == nil {
		return parseListing(def.name, lines), nil
	}
	// A missing chain is an error whose text differs between iptables versions and
	// backends; ask plainly before creating it.
	exists, cerr := s.ipt.ChainExists(def.table, def.name)
	if cerr != nil || exists {
		return nil, fmt.Errorf("list %s %s: %w", def.table, def.name, err)
	}
	if err := s.ipt.NewChain(def.table, def.name); err != nil {
		return nil, fmt.Errorf("create chain %s %s: %w", def.table, def.name, err)
	}
	s.log.Info("iptables chain created", "table", def.table, "chain", def.name)
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
func (s *stack) applyAllLocked(def *chainDef, edits []edit, rules [][]string) error {
	var restoreErr error // the failure of a restore tried for these edits
	if len(edits) > 1 && !s.noRestore {
		lines := make([]string, len(edits))
		for i, e := range edits {
			var rule []string
			if e.op != opDelete {
				rule = rules[e.want]
			}
			lines[i] = restoreLine(def.name, e, rule)
		}
		if restoreErr = s.ipt.Restore(def.table, lines); restoreErr == nil {
			s.restoreFailures = 0
			return nil
		}
		if errors.Is(restoreErr, ErrNoRestore) {
			s.noRestore = true
			s.log.Info("No iptables-restore found; editing rule by rule")
			restoreErr = nil
		}
	}
	for _, e := range edits {
		if err := s.applyLocked(def, e, rules); err != nil {
			return err
		}
	}
	if restoreErr != nil {
		if s.restoreFailures++; s.restoreFailures >= restoreStrikes {
			s.noRestore = true
			s.log.Info("iptables-restore keeps failing where iptables works; editing rule by rule from now on", "reason", restoreErr.Error())
		}
	}
	return nil
}

func (s *stack) applyLocked(def *chainDef, e edit, rules [][]string) error {
	var rule []string
	var err error
	switch e.op {
	case opReplace:
		rule = rules[e.want]
		err = s.ipt.Replace(def.table, def.name, e.pos, rule...)
	case opInsert:
		rule = rules[e.want]
		err = s.ipt.Insert(def.table, def.name, e.pos, rule...)
	case opDelete:
		err = s.ipt.DeleteById(def.table, def.name, e.pos)
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
func (s *stack) expectedLocked(rule []string) string {
	r := render(rule)
	if seen, ok := s.listed[r]; ok {
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
func (s *stack) learnLocked(def *chainDef, have []string, rules [][]string) {
	if len(have) != len(rules) {
		return
	}
	for i, r := range rules {
		predicted := render(r)
		if have[i] != predicted && have[i] != s.listed[predicted] && commentOf(have[i]) == commentOf(predicted) {
			s.log.V(1).Info("iptables lists a rule differently than predicted", "chain", def.name,
				"predicted", predicted, "listed", have[i])
			s.listed[predicted] = have[i]
		}
	}
}

// removeChainLocked deletes the jump to weft's chain (every copy) and the chain itself.
// A chain that does not exist is not an error (and then no jump to it can exist).
func (s *stack) removeChainLocked(def *chainDef) error {
	delete(s.applied, def)
	delete(s.unlearned, def)
	exists, err := s.ipt.ChainExists(def.table, def.name)
	if err != nil {
		return fmt.Errorf("check chain %s %s: %w", def.table, def.name, err)
	}
	if !exists {
		return nil
	}
	const maxCopies = 16 // a bound, not an expectation: one jump is all weft adds
	for range maxCopies {
		ok, err := s.ipt.Exists(def.table, def.hook, def.jump...)
		if err != nil {
			return fmt.Errorf("check jump %s -> %s: %w", def.hook, def.name, err)
		}
		if !ok {
			break
		}
		if err := s.ipt.Delete(def.table, def.hook, def.jump...); err != nil {
			return fmt.Errorf("delete jump %s -> %s: %w", def.hook, def.name, err)
		}
		s.log.Info("iptables jump removed", "table", def.table, "from", def.hook, "to", def.name)
	}
	if err := s.ipt.ClearAndDeleteChain(def.table, def.name); err != nil {
		return fmt.Errorf("delete chain %s %s: %w", def.table, def.name, err)
	}
	s.log.Info("iptables chain removed", "table", def.table, "chain", def.name)
	return nil
}
