package iptables

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/weftnet/weft/pkg/firewall"
)

func TestPeerBlocks(t *testing.T) {
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	run := func(from string, n int) []netip.Addr {
		var out []netip.Addr
		for x := a(from); len(out) < n; x = x.Next() {
			out = append(out, x)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		addrs []netip.Addr
		want  []netip.Prefix
	}{
		{"none", nil, []netip.Prefix{}},
		{"one", []netip.Addr{a("192.0.2.9")}, []netip.Prefix{p("192.0.2.9/32")}},
		{"a pair stays two rules", run("192.0.2.2", 2), []netip.Prefix{p("192.0.2.2/32"), p("192.0.2.3/32")}},
		{"aligned four", run("192.0.2.4", 4), []netip.Prefix{p("192.0.2.4/30")}},
		{"unaligned run", run("192.0.2.1", 11), []netip.Prefix{
			p("192.0.2.1/32"), p("192.0.2.2/32"), p("192.0.2.3/32"), p("192.0.2.4/30"), p("192.0.2.8/30")}},
		{"2000 in a row", run("198.18.0.1", 2000), []netip.Prefix{
			p("198.18.0.1/32"), p("198.18.0.2/32"), p("198.18.0.3/32"), p("198.18.0.4/30"), p("198.18.0.8/29"),
			p("198.18.0.16/28"), p("198.18.0.32/27"), p("198.18.0.64/26"), p("198.18.0.128/25"), p("198.18.1.0/24"),
			p("198.18.2.0/23"), p("198.18.4.0/23"), p("198.18.6.0/24"), p("198.18.7.0/25"), p("198.18.7.128/26"), p("198.18.7.192/28"),
			p("198.18.7.208/32")}},
		{"every other address", scalePeers(6, 2), []netip.Prefix{p("198.18.0.1/32"), p("198.18.0.3/32"),
			p("198.18.0.5/32"), p("198.18.0.7/32"), p("198.18.0.9/32"), p("198.18.0.11/32")}},
		{"the whole space", nil, nil}, // checked below: no overflow at the top
		{"top of the space", run("255.255.255.248", 8), []netip.Prefix{p("255.255.255.248/29")}},
		{"bottom of the space", run("0.0.0.0", 4), []netip.Prefix{p("0.0.0.0/30")}},
	} {
		if tc.want == nil {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			got := peerBlocks(tc.addrs)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v\nwant %v", got, tc.want)
			}
			// Exactly the addresses, nothing more.
			n := 0
			for _, b := range got {
				n += 1 << (32 - b.Bits())
				for _, x := range tc.addrs {
					if b.Contains(x) {
						goto next
					}
				}
				t.Fatalf("block %v holds none of the addresses", b)
			next:
			}
			if n != len(tc.addrs) {
				t.Fatalf("blocks hold %d addresses, want %d", n, len(tc.addrs))
			}
		})
	}
	// Random sets: the blocks hold exactly the set.
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		var addrs []netip.Addr
		for x := a("10.0.0.0"); len(addrs) < 300; x = x.Next() {
			if rng.IntN(4) != 0 {
				addrs = append(addrs, x)
			}
		}
		in := map[netip.Addr]bool{}
		for _, x := range addrs {
			in[x] = true
		}
		covered := 0
		for _, b := range peerBlocks(addrs) {
			for x := b.Addr(); b.Contains(x); x = x.Next() {
				if !in[x] {
					t.Fatalf("block %v holds %v, not a peer", b, x)
				}
				covered++
			}
		}
		if covered != len(addrs) {
			t.Fatalf("blocks hold %d of %d peers", covered, len(addrs))
		}
	}
}

func TestLCSDistinctMatchesTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	pick := func() []string {
		perm := rng.Perm(12)
		n := rng.IntN(12)
		out := make([]string, n)
		for i := range out {
			out[i] = string(rune('a' + perm[i]))
		}
		return out
	}
	for range 5000 {
		a, b := pick(), pick()
		got, ok := lcsDistinct(a, b)
		if !ok {
			t.Fatalf("%q %q: distinct lists refused", a, b)
		}
		if want := lcsTable(a, b); len(got) != len(want) {
			t.Fatalf("%q %q: %v, table gives %v", a, b, got, want)
		}
		for k, ij := range got {
			if a[ij[0]] != b[ij[1]] || k > 0 && (ij[0] <= got[k-1][0] || ij[1] <= got[k-1][1]) {
				t.Fatalf("%q %q: %v is not a common subsequence", a, b, got)
			}
		}
	}
	if _, ok := lcsDistinct([]string{"a", "a"}, []string{"a"}); ok {
		t.Fatal("repeats accepted")
	}
}

// TestPlanEditsLargeChains: a peer joining or leaving a chain of thousands of rules is
// one edit, with or without prefix and suffix in common.
func TestPlanEditsLargeChains(t *testing.T) {
	rules := func(addrs []netip.Addr) []string {
		r, err := inputRules(addrs, TunnelUDP, 8472, true)
		if err != nil {
			t.Fatal(err)
		}
		return renderAll(r)
	}
	peers := scalePeers(3000, 2)
	full := rules(peers)
	for _, i := range []int{0, 1500, 2999} {
		without := rules(slices.Delete(slices.Clone(peers), i, i+1))
		if e := planEdits(without, full); len(e) != 1 || e[0].op != opInsert {
			t.Errorf("join at %d: %v", i, e)
		}
		if e := planEdits(full, without); len(e) != 1 || e[0].op != opDelete {
			t.Errorf("leave at %d: %v", i, e)
		}
	}
	// Reversed: everything moves; the plan is still right.
	rev := slices.Clone(full)
	slices.Reverse(rev)
	if res := apply(rev, full, planEdits(rev, full)); !slices.Equal(res, full) {
		t.Fatal("reversed chain not restored")
	}
}

func TestRestoreLineQuoting(t *testing.T) {
	rule := []string{"-s", "192.0.2.9/32", "-p", "47", "-m", "comment", "--comment", `weft: a "quoted" \ # comment`, "-j", "ACCEPT"}
	for _, e := range []edit{{op: opInsert, pos: 3}, {op: opReplace, pos: 1}, {op: opDelete, pos: 2}} {
		line := restoreLine("WEFT-INPUT", e, rule)
		args, err := splitRestoreLine(line)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{map[editOp]string{opInsert: "-I", opReplace: "-R", opDelete: "-D"}[e.op], "WEFT-INPUT", fmt.Sprint(e.pos)}
		if e.op != opDelete {
			want = append(want, rule...)
		}
		if !slices.Equal(args, want) {
			t.Errorf("%s splits into %q, want %q", line, args, want)
		}
	}
	if got := restoreArg(""); got != `""` {
		t.Errorf("empty argument: %s", got)
	}
}

// TestSyncEditsInOneRestore: many edits of a chain are one iptables-restore run, and a
// pass that needs one edit runs iptables once.
func TestSyncEditsInOneRestore(t *testing.T) {
	m, f, _ := fakeManagerSets(t, allOn, true, &fakeSets{noKernel: true})
	m.SetPeers(scalePeers(500, 2))
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	checkChains(t, f, wantChains(t, m, true))
	calls := f.takeCalls()
	if n := strings.Count(strings.Join(calls, " "), "Restore"); n != 3 || countModifying(calls) != 3+3+3 {
		t.Fatalf("install made calls %v; want one restore and one chain creation and jump per chain", calls)
	}
	m.SetPeers(scalePeers(501, 2))
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	checkChains(t, f, wantChains(t, m, true))
	if calls := f.takeCalls(); !slices.Equal(modifyingOnly(calls), []string{"Insert"}) {
		t.Fatalf("one more peer made calls %v", calls)
	}
}

func modifyingOnly(calls []string) []string {
	var out []string
	for _, c := range calls {
		if modifying[c] {
			out = append(out, c)
		}
	}
	return out
}

// TestRestoreFailureFallsBack: a restore that fails changes nothing, and the same edits go
// one by one. One such failure (a chain changed under the restore) does not stop weft from
// using restore; restoreStrikes in a row do. Without iptables-restore, edits go one by one
// from the start.
func TestRestoreFailureFallsBack(t *testing.T) {
	m, f := fakeManager(t, Options{IPMasq: true}, true) // one chain: one restore per pass
	broken := true
	f.fail = func(method string, spec []string) error {
		if method == "Restore" && broken {
			return errors.New("fake iptables-restore: unknown option --wait")
		}
		return nil
	}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	checkChains(t, f, wantChains(t, m, true))
	if m.noRestore {
		t.Fatal("restore given up after one failure")
	}
	broken = false
	f.chains["nat/"+NATChain] = nil // a repair: six edits, one restore
	f.takeCalls()
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	checkChains(t, f, wantChains(t, m, true))
	if calls := f.takeCalls(); !slices.Contains(calls, "Restore") || m.restoreFailures != 0 {
		t.Fatalf("restore not used again, or failures not forgotten: %v, %d", calls, m.restoreFailures)
	}
	broken = true
	for i := range restoreStrikes {
		f.chains["nat/"+NATChain] = nil
		if err := m.Sync(); err != nil {
			t.Fatal(err)
		}
		checkChains(t, f, wantChains(t, m, true))
		if m.noRestore != (i == restoreStrikes-1) {
			t.Fatalf("after %d failed restores in a row: noRestore %v", i+1, m.noRestore)
		}
	}
	f.chains["nat/"+NATChain] = nil
	f.takeCalls()
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	checkChains(t, f, wantChains(t, m, true))
	if calls := f.takeCalls(); slices.Contains(calls, "Restore") {
		t.Fatalf("restore tried again: %v", calls)
	}

	m2, f2 := fakeManager(t, allOn, true)
	f2.noRestore = true
	if err := m2.Sync(); err != nil {
		t.Fatal(err)
	}
	checkChains(t, f2, wantChains(t, m2, true))
	if !m2.noRestore {
		t.Fatal("a missing iptables-restore is looked for again")
	}
}

// TestNSManyPeersOneRestore runs the bulk path against the real iptables front ends.
func TestNSManyPeersOneRestore(t *testing.T) {
	for _, bin := range binaries {
		t.Run(bin, func(t *testing.T) {
			e := newNSEnv(t, bin)
			e.sets = &fakeSets{noKernel: true} // one rule per block of peers
			m := e.manager(t, allOn)
			m.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
			m.SetTunnelPort(TunnelGRE, 0)
			peers := scalePeers(301, 2)
			m.SetPeers(peers[:300])
			e.do(t, m.Sync)
			e.checkChain(t, m, &inputDef)
			calls := e.r.takeCalls()
			inserts := strings.Count(strings.Join(calls, " "), "Insert") // the INPUT jump is one
			if !slices.Contains(calls, "Restore") || inserts > 1 {
				t.Fatalf("install ran %v; want restores, no rule by rule", calls)
			}
			for _, ps := range [][]netip.Addr{peers, peers[1:], scalePeers(64, 1)} {
				m.SetPeers(ps)
				e.do(t, m.Sync)
				e.checkChain(t, m, &inputDef)
			}
			// 198.18.0.1 to .64: .1, .2, .3, .4/30, .8/29, .16/28, .32/27, .64, and the DROP.
			if got := len(e.rules(t, "filter", InputChain)); got != 9 {
				t.Errorf("64 peers in a row: %d rules, want 9", got)
			}
			e.r.takeCalls()
			e.do(t, m.Sync)
			if mod := modifyingCalls(e.r.takeCalls()); len(mod) != 0 {
				t.Fatalf("idle pass modified: %v", mod)
			}
			if m.noRestore {
				t.Fatal("restore given up")
			}
		})
	}
}

// TestRunPeerChangeSyncsOnlyInput: a pass woken by new peers lists and edits WEFT-INPUT
// alone; the periodic pass checks every chain.
func TestRunPeerChangeSyncsOnlyInput(t *testing.T) {
	f := newFakeIPT()
	sets := newFakeSets()
	m := newManager(f, sets, true, Options{IPMasq: true, ForwardRules: true, RestrictTunnelPort: true, Resync: time.Hour}, testr.New(t))
	m.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
	m.SetTunnelPort(TunnelUDP, 8472)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFor(t, "the first pass", func() bool { return len(f.rules("filter", InputChain)) == 2 })
	passDone(m) // then the woken pass that follows makes no call: nothing is due
	f.takeCalls()
	sets.mu.Lock()
	sets.calls = nil
	sets.mu.Unlock()
	m.SetPeers([]netip.Addr{peerA})
	waitFor(t, "the peer in the set", func() bool { got, _ := sets.members(PeerSet); return len(got) == 1 })
	passDone(m)
	if calls := f.takeCalls(); !slices.Equal(calls, []string{"List", "Exists"}) {
		t.Fatalf("pass for a new peer ran %v, want the input chain's list and jump check", calls)
	}
	sets.mu.Lock()
	defer sets.mu.Unlock()
	if !slices.Equal(sets.calls, []string{"List", "Add"}) {
		t.Fatalf("pass for a new peer made set calls %v, want one list and one add", sets.calls)
	}
}

// passDone waits for the pass in progress, if any, to end: a pass holds syncMu from its
// first call to its last, so once one of its effects has been seen, this returns after it.
func passDone(m *Manager) {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
}
