package iptables

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/weftnet/weft/pkg/firewall"
)

// fakeIPT is an in-memory iptables for tests that need no root: chains hold rules as
// iptables lists them. It records every call and can be told to fail some, or to list rules
// differently from render's prediction, as another iptables version might.
type fakeIPT struct {
	mu        sync.Mutex
	chains    map[string][]string // "table/chain" -> listed rules
	builtin   map[string]bool
	calls     []string                                 // method names, in order
	fail      func(method string, spec []string) error // nil: nothing fails
	renderAs  func(string) string                      // nil: as render predicts
	noRestore bool                                     // Restore reports ErrNoRestore
}

func newFakeIPT() *fakeIPT {
	f := &fakeIPT{chains: map[string][]string{}, builtin: map[string]bool{}}
	for _, c := range []string{"nat/PREROUTING", "nat/INPUT", "nat/OUTPUT", "nat/POSTROUTING",
		"filter/INPUT", "filter/FORWARD", "filter/OUTPUT"} {
		f.chains[c] = nil
		f.builtin[c] = true
	}
	return f
}

var errFake = errors.New("fake iptables: No chain/target/match by that name")

// modifying names the runner methods that change the tables.
var modifying = map[string]bool{"ipset Create": true, "ipset Add": true, "ipset Del": true, "ipset Destroy": true, "NewChain": true, "Insert": true, "Append": true, "Replace": true,
	"DeleteById": true, "Delete": true, "ClearAndDeleteChain": true, "Restore": true}

func (f *fakeIPT) call(method string, spec []string) error {
	f.calls = append(f.calls, method)
	if f.fail != nil {
		return f.fail(method, spec)
	}
	return nil
}

func (f *fakeIPT) listed(spec []string) string {
	r := render(spec)
	if f.renderAs != nil {
		r = f.renderAs(r)
	}
	return r
}

// rules returns a copy of a chain's listed rules.
func (f *fakeIPT) rules(table, chain string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.chains[table+"/"+chain])
}

func (f *fakeIPT) hasChain(table, chain string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.chains[table+"/"+chain]
	return ok
}

// takeCalls returns the calls so far and forgets them.
func (f *fakeIPT) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeIPT) lookup(table, chain string) ([]string, error) {
	r, ok := f.chains[table+"/"+chain]
	if !ok {
		return nil, fmt.Errorf("%w: %s %s", errFake, table, chain)
	}
	return r, nil
}

// checkTarget refuses a jump to a chain that does not exist, as iptables does.
func (f *fakeIPT) checkTarget(table string, spec []string) error {
	if i := slices.Index(spec, "-j"); i >= 0 && i+1 < len(spec) && strings.HasPrefix(spec[i+1], "WEFT-") {
		if _, ok := f.chains[table+"/"+spec[i+1]]; !ok {
			return fmt.Errorf("%w: target %s", errFake, spec[i+1])
		}
	}
	return nil
}

func (f *fakeIPT) List(table, chain string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("List", nil); err != nil {
		return nil, err
	}
	rules, err := f.lookup(table, chain)
	if err != nil {
		return nil, err
	}
	head := "-N " + chain
	if f.builtin[table+"/"+chain] {
		head = "-P " + chain + " ACCEPT"
	}
	out := []string{head}
	for _, r := range rules {
		out = append(out, "-A "+chain+" "+r)
	}
	return out, nil
}

func (f *fakeIPT) ChainExists(table, chain string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("ChainExists", nil); err != nil {
		return false, err
	}
	_, ok := f.chains[table+"/"+chain]
	return ok, nil
}

func (f *fakeIPT) NewChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("NewChain", nil); err != nil {
		return err
	}
	if _, ok := f.chains[table+"/"+chain]; ok {
		return fmt.Errorf("fake iptables: chain %s already exists", chain)
	}
	f.chains[table+"/"+chain] = nil
	return nil
}

func (f *fakeIPT) Exists(table, chain string, spec ...string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Exists", spec); err != nil {
		return false, err
	}
	rules, err := f.lookup(table, chain)
	if err != nil {
		return false, err
	}
	if err := f.checkTarget(table, spec); err != nil {
		return false, err
	}
	return slices.Contains(rules, f.listed(spec)), nil
}

func (f *fakeIPT) Insert(table, chain string, pos int, spec ...string) error {
	return f.change("Insert", "-I", table, chain, pos, spec)
}

func (f *fakeIPT) Append(table, chain string, spec ...string) error {
	return f.change("Append", "-A", table, chain, 0, spec)
}

func (f *fakeIPT) Replace(table, chain string, pos int, spec ...string) error {
	return f.change("Replace", "-R", table, chain, pos, spec)
}

func (f *fakeIPT) DeleteById(table, chain string, pos int) error {
	return f.change("DeleteById", "-D", table, chain, pos, nil)
}

// change is Insert, Append, Replace or DeleteById (method), which edit a chain as the
// restore command op does. A rule that jumps to a chain that does not exist cannot be
// inserted or appended, as with iptables.
func (f *fakeIPT) change(method, op, table, chain string, pos int, spec []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call(method, spec); err != nil {
		return err
	}
	rules, err := f.lookup(table, chain)
	if err != nil {
		return err
	}
	if op == "-I" || op == "-A" {
		if err := f.checkTarget(table, spec); err != nil {
			return err
		}
	}
	if rules, err = f.edit(rules, op, pos, spec); err != nil {
		return fmt.Errorf("fake iptables: %w", err)
	}
	f.chains[table+"/"+chain] = rules
	return nil
}

// edit applies the restore command op to rules and returns them: "-I" inserts spec at
// pos, "-R" replaces the rule at pos, "-D" deletes it, "-A" appends spec (positions from
// 1, checked as iptables does).
func (f *fakeIPT) edit(rules []string, op string, pos int, spec []string) ([]string, error) {
	switch op {
	case "-I":
		if pos < 1 || pos > len(rules)+1 {
			return nil, fmt.Errorf("index of insertion %d too big", pos)
		}
		return slices.Insert(rules, pos-1, f.listed(spec)), nil
	case "-R":
		if pos < 1 || pos > len(rules) {
			return nil, fmt.Errorf("index of replacement %d too big", pos)
		}
		rules[pos-1] = f.listed(spec)
		return rules, nil
	case "-D":
		if pos < 1 || pos > len(rules) {
			return nil, fmt.Errorf("index of deletion %d too big", pos)
		}
		return slices.Delete(rules, pos-1, pos), nil
	case "-A":
		return append(rules, f.listed(spec)), nil
	}
	return nil, fmt.Errorf("unknown command %s", op)
}

func (f *fakeIPT) Delete(table, chain string, spec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Delete", spec); err != nil {
		return err
	}
	rules, err := f.lookup(table, chain)
	if err != nil {
		return err
	}
	i := slices.Index(rules, f.listed(spec))
	if i < 0 {
		return fmt.Errorf("fake iptables: Bad rule (does a matching rule exist in that chain?)")
	}
	f.chains[table+"/"+chain] = slices.Delete(rules, i, i+1)
	return nil
}

func (f *fakeIPT) ClearAndDeleteChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("ClearAndDeleteChain", nil); err != nil {
		return err
	}
	if _, ok := f.chains[table+"/"+chain]; !ok {
		return nil
	}
	for name, rules := range f.chains {
		for _, r := range rules {
			if strings.HasPrefix(name, table+"/") && strings.HasSuffix(r, "-j "+chain) {
				return fmt.Errorf("fake iptables: chain %s is still referenced from %s", chain, name)
			}
		}
	}
	delete(f.chains, table+"/"+chain)
	return nil
}

// Restore applies restore lines ("-I chain pos rule", "-R chain pos rule", "-D chain pos",
// "-A chain rule") to a copy of table and keeps the result only if every line works, as
// iptables-restore commits. Each line is also offered to fail under the method name it
// stands for. With noRestore set it reports ErrNoRestore.
func (f *fakeIPT) Restore(table string, lines []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Restore", nil); err != nil {
		return err
	}
	if f.noRestore {
		return ErrNoRestore
	}
	work := map[string][]string{}
	for k, v := range f.chains {
		work[k] = slices.Clone(v)
	}
	for i, l := range lines {
		args, err := splitRestoreLine(l)
		if err != nil || len(args) < 2 {
			return fmt.Errorf("fake iptables-restore: line %d %q: bad line (%v)", i+2, l, err)
		}
		op, chain, rest := args[0], args[1], args[2:]
		key := table + "/" + chain
		rules, ok := work[key]
		if !ok {
			return fmt.Errorf("fake iptables-restore: line %d failed: %w: %s", i+2, errFake, chain)
		}
		pos := 0
		if op != "-A" {
			if len(rest) == 0 {
				return fmt.Errorf("fake iptables-restore: line %d: no position", i+2)
			}
			if pos, err = strconv.Atoi(rest[0]); err != nil {
				return fmt.Errorf("fake iptables-restore: line %d: %w", i+2, err)
			}
			rest = rest[1:]
		}
		method := map[string]string{"-I": "Insert", "-R": "Replace", "-D": "DeleteById", "-A": "Append"}[op]
		if f.fail != nil {
			if err := f.fail(method, rest); err != nil {
				return fmt.Errorf("fake iptables-restore: line %d failed: %w", i+2, err)
			}
		}
		if work[key], err = f.edit(rules, op, pos, rest); err != nil {
			return fmt.Errorf("fake iptables-restore: line %d failed: %w", i+2, err)
		}
	}
	f.chains = work
	return nil
}

// splitRestoreLine splits a line as iptables-restore does: on blanks, with double quotes
// grouping and backslash escaping inside them.
func splitRestoreLine(l string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inQuote, escaped, have := false, false, false
	for _, c := range l {
		switch {
		case escaped:
			cur.WriteRune(c)
			escaped = false
		case inQuote && c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (c == ' ' || c == '\t'):
			if have || cur.Len() > 0 {
				args = append(args, cur.String())
			}
			cur.Reset()
			have = false
		default:
			cur.WriteRune(c)
		}
	}
	if inQuote {
		return nil, errors.New("unterminated quote")
	}
	if have || cur.Len() > 0 {
		args = append(args, cur.String())
	}
	return args, nil
}

var _ runner = (*fakeIPT)(nil)

// fakeSets is an in-memory ip_set. With noKernel, creating a set fails, as on a kernel
// without ip_set.
type fakeSets struct {
	mu       sync.Mutex
	sets     map[string][]netip.Addr // sorted members
	families map[string]firewall.Family
	calls    []string
	noKernel bool
}

func newFakeSets() *fakeSets {
	return &fakeSets{sets: map[string][]netip.Addr{}, families: map[string]firewall.Family{}}
}

func (s *fakeSets) List(name string) ([]netip.Addr, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "List")
	m, ok := s.sets[name]
	return slices.Clone(m), ok, nil
}

func (s *fakeSets) Create(name string, f firewall.Family) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "Create")
	if s.noKernel {
		return errors.New("fake ipset: invalid argument")
	}
	if _, ok := s.sets[name]; ok {
		return errors.New("fake ipset: set exists")
	}
	s.sets[name] = []netip.Addr{}
	s.families[name] = f
	return nil
}

func (s *fakeSets) Add(name string, a netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "Add")
	m, ok := s.sets[name]
	if !ok {
		return errors.New("fake ipset: no such set")
	}
	if !s.families[name].Has(a) {
		return fmt.Errorf("fake ipset: %v is not of the set's family %v", a, s.families[name])
	}
	if !slices.Contains(m, a) {
		m = append(m, a)
		slices.SortFunc(m, netip.Addr.Compare)
	}
	s.sets[name] = m
	return nil
}

func (s *fakeSets) Del(name string, a netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "Del")
	m, ok := s.sets[name]
	if !ok {
		return errors.New("fake ipset: no such set")
	}
	s.sets[name] = slices.DeleteFunc(m, func(x netip.Addr) bool { return x == a })
	return nil
}

func (s *fakeSets) Destroy(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "Destroy")
	delete(s.sets, name)
	return nil
}

// members returns the set's members and whether it exists.
func (s *fakeSets) members(name string) ([]netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.sets[name]
	return slices.Clone(m), ok
}
