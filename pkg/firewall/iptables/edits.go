package iptables

import (
	"strings"
)

// render returns a rule as `iptables -S` lists it (after "-A <chain> "): arguments joined
// by spaces, the comment quoted the way iptables quotes it, GRE by name.
func render(spec []string) string {
	var b strings.Builder
	for i, a := range spec {
		if i > 0 {
			b.WriteByte(' ')
			switch {
			case spec[i-1] == "--comment":
				a = quoteSaveString(a)
			case spec[i-1] == "-p" && a == protoGRE:
				a = "gre"
			}
		}
		b.WriteString(a)
	}
	return b.String()
}

// quoteSaveString quotes like libxtables' xtables_save_string: a value of only letters,
// digits, underscore and dash stands bare; anything else goes in double quotes, with each
// double quote, backslash and single quote escaped by a backslash.
func quoteSaveString(s string) string {
	bare := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			bare = false
			break
		}
	}
	if bare {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		if c == '"' || c == '\\' || c == '\'' {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	b.WriteByte('"')
	return b.String()
}

// parseListing keeps the rules of `iptables -S chain` output, without the "-A chain "
// prefix, in order. The "-N chain" line and anything else is dropped.
func parseListing(chain string, lines []string) []string {
	prefix := "-A " + chain + " "
	rules := make([]string, 0, len(lines))
	for _, l := range lines {
		if r, ok := strings.CutPrefix(strings.TrimSpace(l), prefix); ok {
			rules = append(rules, r)
		}
	}
	return rules
}

// commentOf returns the quoted comment of a listed rule, or "".
func commentOf(listed string) string {
	const key = "--comment "
	i := strings.Index(listed, key)
	if i < 0 {
		return ""
	}
	rest := listed[i+len(key):]
	if !strings.HasPrefix(rest, `"`) {
		c, _, _ := strings.Cut(rest, " ")
		return c
	}
	for j := 1; j < len(rest); j++ {
		switch rest[j] {
		case '\\':
			j++
		case '"':
			return rest[:j+1]
		}
	}
	return rest
}

// editOp is the kind of one chain edit.
type editOp int

const (
	opReplace editOp = iota // iptables -R chain pos rule
	opInsert                // iptables -I chain pos rule (pos may be one past the end)
	opDelete                // iptables -D chain pos
)

func (o editOp) String() string {
	return [...]string{"replace", "insert", "delete"}[o]
}

// edit is one command of a plan. Positions are 1-based, as iptables counts, and already
// account for the edits before it in the plan.
type edit struct {
	op   editOp
	pos  int
	want int // index of the desired rule (replace, insert)
}

// planEdits returns the commands, in order, that turn the chain have into want. Rules both
// lists keep in the same order (a longest common subsequence) are left in place; between
// two kept rules, stale rules are replaced by wanted ones one for one, then the surplus
// of either side is inserted or deleted. Equal lists give no edits.
func planEdits(have, want []string) []edit {
	// Common prefix and suffix need no table, and are all there is when one rule changed.
	pre := 0
	for pre < len(have) && pre < len(want) && have[pre] == want[pre] {
		pre++
	}
	suf := 0
	for suf < len(have)-pre && suf < len(want)-pre && have[len(have)-1-suf] == want[len(want)-1-suf] {
		suf++
	}
	h, w := have[pre:len(have)-suf], want[pre:len(want)-suf]
	if len(h) == 0 && len(w) == 0 {
		return nil
	}

	var edits []edit
	pos := pre + 1 // position of the next rule not yet settled
	hi, wi := 0, 0
	for _, a := range append(lcs(h, w), [2]int{len(h), len(w)}) {
		stale, fresh := a[0]-hi, a[1]-wi
		k := min(stale, fresh)
		for x := range fresh {
			op := opInsert
			if x < k {
				op = opReplace
			}
			edits = append(edits, edit{op: op, pos: pos, want: pre + wi + x})
			pos++
		}
		for range stale - k {
			edits = append(edits, edit{op: opDelete, pos: pos})
		}
		pos++ // the kept rule
		hi, wi = a[0]+1, a[1]+1
	}
	return edits
}

// maxLCSCells bounds the dynamic-programming table of lcs (4 bytes a cell): chains whose
// rules repeat and that differ over more than this get no common rules, so the plan
// replaces them (still correct, just more edits).
const maxLCSCells = 1 << 20

// lcs returns index pairs (i, j) of a longest common subsequence of a and b, ascending.
// When no rule repeats within a or within b (weft's chains: every peer has its own rule)
// it takes O(n log n) time and O(n) memory; otherwise a dynamic-programming table of
// len(a)×len(b) cells, up to maxLCSCells.
func lcs(a, b []string) [][2]int {
	if len(a) == 0 || len(b) == 0 {
		return nil
	}
	if pairs, ok := lcsDistinct(a, b); ok {
		return pairs
	}
	if len(a)*len(b) > maxLCSCells {
		return nil
	}
	return lcsTable(a, b)
}

// lcsTable is lcs by dynamic programming over a len(a)×len(b) table.
func lcsTable(a, b []string) [][2]int {
	// t[i][j] = LCS length of a[i:] and b[j:], kept in one flat slice.
	cols := len(b) + 1
	t := make([]int32, (len(a)+1)*cols)
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			switch {
			case a[i] == b[j]:
				t[i*cols+j] = t[(i+1)*cols+j+1] + 1
			default:
				t[i*cols+j] = max(t[(i+1)*cols+j], t[i*cols+j+1])
			}
		}
	}
	var pairs [][2]int
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] == b[j]:
			pairs = append(pairs, [2]int{i, j})
			i++
			j++
		case t[(i+1)*cols+j] >= t[i*cols+j+1]:
			i++
		default:
			j++
		}
	}
	return pairs
}

// lcsDistinct is lcs for lists without repeats: the rules of a that b has, taken in a's
// order with their positions in b, and the longest run of those whose b positions
// increase (patience sorting) is a longest common subsequence. Among equally long ones
// it keeps the first-ending, as lcs's table walk does. ok is false when a rule repeats.
func lcsDistinct(a, b []string) (pairs [][2]int, ok bool) {
	posB := make(map[string]int, len(b))
	for j, r := range b {
		if _, dup := posB[r]; dup {
			return nil, false
		}
		posB[r] = j
	}
	seenA := make(map[string]bool, len(a))
	var match [][2]int // (i, j) for a[i] == b[j], i ascending
	for i, r := range a {
		if seenA[r] {
			return nil, false
		}
		seenA[r] = true
		if j, ok := posB[r]; ok {
			match = append(match, [2]int{i, j})
		}
	}
	// tails[k] is the index in match of the smallest b position ending an increasing run
	// of length k+1; prev links each match to its predecessor in such a run.
	var tails []int
	prev := make([]int, len(match))
	for m, ij := range match {
		lo, hi := 0, len(tails)
		for lo < hi {
			mid := (lo + hi) / 2
			if match[tails[mid]][1] < ij[1] {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		prev[m] = -1
		if lo > 0 {
			prev[m] = tails[lo-1]
		}
		if lo == len(tails) {
			tails = append(tails, m)
		} else {
			tails[lo] = m
		}
	}
	if len(tails) == 0 {
		return nil, true
	}
	pairs = make([][2]int, len(tails))
	for k, m := len(tails)-1, tails[len(tails)-1]; k >= 0; k, m = k-1, prev[m] {
		pairs[k] = match[m]
	}
	return pairs, true
}
