package iptables

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		spec []string
		want string
	}{
		{[]string{"-m", "comment", "--comment", "plain_word-1", "-j", "RETURN"}, `-m comment --comment plain_word-1 -j RETURN`},
		{[]string{"-m", "comment", "--comment", "weft: a b", "-j", "RETURN"}, `-m comment --comment "weft: a b" -j RETURN`},
		{[]string{"-m", "comment", "--comment", `say "hi" it's \`, "-j", "RETURN"}, `-m comment --comment "say \"hi\" it\'s \\" -j RETURN`},
		{[]string{"-m", "comment", "--comment", "", "-j", "RETURN"}, `-m comment --comment "" -j RETURN`},
		{[]string{"-s", "192.0.2.1/32", "-p", "47", "-j", "ACCEPT"}, `-s 192.0.2.1/32 -p gre -j ACCEPT`},
		{[]string{"-p", "udp", "--dport", "47"}, `-p udp --dport 47`},
	} {
		if got := render(tc.spec); got != tc.want {
			t.Errorf("render(%q) = %s, want %s", tc.spec, got, tc.want)
		}
	}
}

func TestParseListingAndComment(t *testing.T) {
	lines := []string{
		"-N WEFT-FWD",
		`-A WEFT-FWD -s 10.244.0.0/16 -m comment --comment "weft: forward from network" -j ACCEPT`,
		`-A WEFT-FWDX -j ACCEPT`,
		`-A WEFT-FWD -d 10.244.0.0/16 -m comment --comment plain -j ACCEPT`,
	}
	got := parseListing("WEFT-FWD", lines)
	want := []string{
		`-s 10.244.0.0/16 -m comment --comment "weft: forward from network" -j ACCEPT`,
		`-d 10.244.0.0/16 -m comment --comment plain -j ACCEPT`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("parseListing = %q, want %q", got, want)
	}
	for in, want := range map[string]string{
		got[0]:                               `"weft: forward from network"`,
		got[1]:                               `plain`,
		`-j ACCEPT`:                          ``,
		`-m comment --comment "a \" b" -j X`: `"a \" b"`,
	} {
		if c := commentOf(in); c != want {
			t.Errorf("commentOf(%s) = %s, want %s", in, c, want)
		}
	}
}

func TestPlanEdits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		have, want string // one letter per rule
		edits      string // op letter (r, i, d) and position, space separated
	}{
		{"equal", "abc", "abc", ""},
		{"both empty", "", "", ""},
		{"fill empty chain", "", "abc", "i1 i2 i3"},
		{"flush", "abc", "", "d1 d1 d1"},
		{"one missing in the middle", "acd", "abcd", "i2"},
		{"one missing at the end", "abc", "abcd", "i4"},
		{"one stale in the middle", "abxc", "abc", "d3"},
		{"one changed", "abxd", "abcd", "r3"},
		{"all changed", "xyz", "abc", "r1 r2 r3"},
		{"changed and grown", "axd", "abcd", "r2 i3"},
		{"changed and shrunk", "axyzd", "abd", "r2 d3 d3"},
		{"moved", "bca", "abc", "i1 d4"},
		{"duplicate", "abbc", "abc", "d3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			have, want := strings.Split(tc.have, ""), strings.Split(tc.want, "")
			var got []string
			for _, e := range planEdits(have, want) {
				got = append(got, fmt.Sprintf("%c%d", e.op.String()[0], e.pos))
			}
			if s := strings.Join(got, " "); s != tc.edits {
				t.Errorf("edits = %q, want %q", s, tc.edits)
			}
			if res := apply(have, want, planEdits(have, want)); !slices.Equal(res, want) {
				t.Errorf("applying the edits gives %q, want %q", res, want)
			}
		})
	}
}

// apply carries out edits the way iptables would, with 1-based positions.
func apply(have, want []string, edits []edit) []string {
	chain := slices.Clone(have)
	for _, e := range edits {
		switch e.op {
		case opReplace:
			chain[e.pos-1] = want[e.want]
		case opInsert:
			chain = slices.Insert(chain, e.pos-1, want[e.want])
		case opDelete:
			chain = slices.Delete(chain, e.pos-1, e.pos)
		}
	}
	return chain
}

// TestPlanEditsRandom checks, over many random chains, that the plan turns have into want,
// leaves the rules both keep in order alone (the edit count lies between the larger and the
// sum of the two sides' differences), and plans nothing for equal chains.
func TestPlanEditsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randChain := func() []string {
		c := make([]string, rng.IntN(9))
		for i := range c {
			c[i] = string(rune('a' + rng.IntN(6)))
		}
		return c
	}
	for range 5000 {
		have, want := randChain(), randChain()
		edits := planEdits(have, want)
		if res := apply(have, want, edits); !slices.Equal(res, want) {
			t.Fatalf("have %q want %q: edits %v give %q", have, want, edits, res)
		}
		kept := len(lcs(have, want))
		stale, fresh := len(have)-kept, len(want)-kept
		if len(edits) < max(stale, fresh) || len(edits) > stale+fresh {
			t.Fatalf("have %q want %q: %d edits for %d stale and %d new rules", have, want, len(edits), stale, fresh)
		}
		if slices.Equal(have, want) && len(edits) != 0 {
			t.Fatalf("equal chains gave edits %v", edits)
		}
	}
}
