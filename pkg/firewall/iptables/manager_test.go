package iptables

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/weftnet/weft/pkg/firewall"
)

var (
	testNetwork = netip.MustParsePrefix("10.244.0.0/16")
	testSubnet  = netip.MustParsePrefix("10.244.3.0/24")
	peerA       = netip.MustParseAddr("192.0.2.2")
	peerB       = netip.MustParseAddr("192.0.2.3")
)

var allOn = Options{IPMasq: true, ForwardRules: true, RestrictTunnelPort: true}

// fakeManager returns a Manager over a fake iptables and ip_set with every input set.
func fakeManager(t *testing.T, opts Options, randomFully bool) (*Manager, *fakeIPT) {
	m, f, _ := fakeManagerSets(t, opts, randomFully, newFakeSets())
	return m, f
}

func fakeManagerSets(t *testing.T, opts Options, randomFully bool, sets *fakeSets) (*Manager, *fakeIPT, *fakeSets) {
	f := newFakeIPT()
	m := newManager(f, sets, randomFully, opts, testr.New(t))
	m.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
	m.SetTunnelPort("udp", 8285)
	m.SetPeers([]netip.Addr{peerB, peerA})
	return m, f, sets
}

// wantChains returns what the chains should hold for the manager's current inputs.
func wantChains(t *testing.T, m *Manager, randomFully bool) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, p := range desired(m.opts, m.Inputs(), caps{randomFully: randomFully, ipset: !m.noIPSet}) {
		if p.action == firewall.Manage {
			out[p.def.table+"/"+p.def.name] = renderAll(p.rules)
		}
	}
	return out
}

func checkChains(t *testing.T, f *fakeIPT, want map[string][]string) {
	t.Helper()
	for key, rules := range want {
		table, chain, _ := strings.Cut(key, "/")
		if got := f.rules(table, chain); !slices.Equal(got, rules) {
			t.Errorf("%s holds\n%q\nwant\n%q", key, got, rules)
		}
	}
}

func countModifying(calls []string) int {
	n := 0
	for _, c := range calls {
		if modifying[c] {
			n++
		}
	}
	return n
}

func TestSyncInstallsThenIdles(t *testing.T) {
	m, f := fakeManager(t, allOn, true)
	// Foreign rules in the built-in chains stay, in order, around weft's jumps.
	f.chains["nat/POSTROUTING"] = []string{"-o eth9 -j MASQUERADE"}
	f.chains["filter/INPUT"] = []string{"-j DROP"}

	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	checkChains(t, f, wantChains(t, m, true))
	checkChains(t, f, map[string][]string{
		"nat/POSTROUTING": {"-o eth9 -j MASQUERADE", render(natDef.jump)},
		"filter/FORWARD":  {render(forwardDef.jump)},
		"filter/INPUT":    {render(inputDef.jump), "-j DROP"},
	})
	f.takeCalls()

	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	calls := f.takeCalls()
	if n := countModifying(calls); n != 0 || len(calls) != 6 {
		t.Fatalf("idle pass made calls %v (%d modifying); want 6 read-only (list + check per chain)", calls, n)
	}
}

func TestSyncRepairsAndFollowsChanges(t *testing.T) {
	repairs := 0
	opts := allOn
	opts.OnRepair = func() { repairs++ }
	m, f, sets := fakeManagerSets(t, opts, true, newFakeSets())
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	// A rule deleted by hand, a jump deleted by hand, a foreign rule added to weft's chain.
	f.chains["nat/"+NATChain] = slices.Delete(f.chains["nat/"+NATChain], 2, 3)
	f.chains["filter/FORWARD"] = nil
	f.chains["filter/"+InputChain] = slices.Insert(f.chains["filter/"+InputChain], 0, "-j ACCEPT")
	f.takeCalls()
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := countModifying(f.takeCalls()); n != 3 {
		t.Errorf("repair took %d modifying calls, want 3", n)
	}
	checkChains(t, f, wantChains(t, m, true))
	checkChains(t, f, map[string][]string{"filter/FORWARD": {render(forwardDef.jump)}})
	if repairs != 3 {
		t.Errorf("%d repairs counted, want 3 (a chain each)", repairs)
	}
	// A member deleted from the set by hand is back after one pass, as one Add.
	if err := sets.Del(PeerSet, peerA); err != nil {
		t.Fatal(err)
	}
	sets.calls = nil
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if got, _ := sets.members(PeerSet); !slices.Equal(got, []netip.Addr{peerA, peerB}) || !slices.Equal(sets.calls, []string{"List", "Add"}) {
		t.Errorf("set %v after repair, calls %v", got, sets.calls)
	}
	if repairs != 4 {
		t.Errorf("%d repairs counted, want 4", repairs)
	}

	// A new network and subnet replace the nat and forward rules; a peer that left loses its rule.
	m.SetNetwork(firewall.Overlay{Network: netip.MustParsePrefix("10.50.0.0/16"), Subnet: netip.MustParsePrefix("10.50.9.0/24")})
	m.SetPeers([]netip.Addr{peerB})
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	checkChains(t, f, wantChains(t, m, true))
	if got, _ := sets.members(PeerSet); !slices.Equal(got, []netip.Addr{peerB}) {
		t.Errorf("set after peer A left: %v", got)
	}
	if repairs != 4 {
		t.Errorf("changes asked for counted as repairs: %d", repairs)
	}
	for key, rules := range f.chains {
		for _, r := range rules {
			if strings.Contains(r, "10.244.") {
				t.Errorf("%s still holds stale rule %s", key, r)
			}
		}
	}
}

func TestSyncLearnsListingDifferences(t *testing.T) {
	m, f := fakeManager(t, allOn, true)
	// This "iptables" lists the mark without its mask and udp without "-m udp".
	f.renderAs = func(r string) string {
		r = strings.ReplaceAll(r, "0x4000/0x4000", "0x4000")
		return strings.ReplaceAll(r, "-p udp -m udp", "-p udp")
	}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	f.takeCalls()
	for range 2 {
		if err := m.Sync(); err != nil {
			t.Fatal(err)
		}
		if calls := f.takeCalls(); countModifying(calls) != 0 {
			t.Fatalf("pass after learning made calls %v", calls)
		}
	}
	// A learnt rule deleted by hand still comes back.
	f.chains["filter/"+InputChain] = f.chains["filter/"+InputChain][1:]
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := len(f.rules("filter", InputChain)); got != 2 {
		t.Fatalf("input chain has %d rules after repair, want 2", got)
	}
}

func TestRandomFullyFallback(t *testing.T) {
	m, f := fakeManager(t, Options{IPMasq: true}, true)
	f.fail = func(method string, spec []string) error {
		if slices.Contains(spec, "--random-fully") {
			return errors.New("fake iptables: RULE_INSERT failed (Invalid argument)")
		}
		return nil
	}
	if err := m.Sync(); err != nil {
		t.Fatalf("Sync = %v, want the fallback to succeed", err)
	}
	if m.randomFully {
		t.Fatal("randomFully still on after the kernel refused it")
	}
	checkChains(t, f, wantChains(t, m, false))
	f.takeCalls()
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if calls := f.takeCalls(); countModifying(calls) != 0 {
		t.Fatalf("pass after fallback made calls %v", calls)
	}
}

// TestNoRandomFully: --ip-masq-fully-random-disable masquerades without --random-fully
// although iptables has it, as flanneld does.
func TestNoRandomFully(t *testing.T) {
	m, f := fakeManager(t, Options{IPMasq: true, DisableFullyRandom: true}, true)
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	checkChains(t, f, wantChains(t, m, false))
	masq := 0
	for _, r := range f.rules("nat", NATChain) {
		if strings.Contains(r, "--random-fully") {
			t.Errorf("rule %q has --random-fully", r)
		}
		if strings.Contains(r, "MASQUERADE") {
			masq++
		}
	}
	if masq != 2 {
		t.Errorf("%d MASQUERADE rules, want flanneld's 2", masq)
	}
}

func TestOtherFailureKeepsRandomFully(t *testing.T) {
	m, f := fakeManager(t, Options{IPMasq: true, ForwardRules: true}, true)
	boom := errors.New("fake iptables: resource temporarily unavailable")
	f.fail = func(method string, spec []string) error {
		if method == "Insert" && slices.Contains(spec, "MASQUERADE") {
			return boom
		}
		return nil
	}
	err := m.Sync()
	if !errors.Is(err, boom) {
		t.Fatalf("Sync = %v, want the iptables failure", err)
	}
	if !m.randomFully {
		t.Fatal("randomFully turned off by a failure that refused the rule without it too")
	}
	// The forward chain is independent of the failing nat chain.
	checkChains(t, f, map[string][]string{"filter/FORWARD": {render(forwardDef.jump)}})
}

func TestInvalidTunnelReported(t *testing.T) {
	m, f := fakeManager(t, allOn, true)
	m.SetTunnelPort("sctp", 9)
	err := m.Sync()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Sync = %v, want ErrInvalid", err)
	}
	if f.hasChain("filter", InputChain) {
		t.Fatal("input chain created from invalid inputs")
	}
	checkChains(t, f, map[string][]string{"nat/POSTROUTING": {render(natDef.jump)}})
}

func TestUnknownInputsLeaveRulesAlone(t *testing.T) {
	f := newFakeIPT()
	f.chains["nat/"+NATChain] = []string{"-j RETURN"}
	f.chains["nat/POSTROUTING"] = []string{render(natDef.jump)}
	m := newManager(f, newFakeSets(), true, allOn, testr.New(t))
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if calls := f.takeCalls(); len(calls) != 0 {
		t.Fatalf("pass with no inputs made calls %v", calls)
	}
	if got := f.rules("nat", NATChain); !slices.Equal(got, []string{"-j RETURN"}) {
		t.Fatalf("previous run's chain changed to %q", got)
	}
}

func TestDisabledFeaturesRemovedOnce(t *testing.T) {
	m, f := fakeManager(t, allOn, true)
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	// Restarted with masquerading and forward rules off, and a backend without a tunnel.
	m2 := newManager(f, newFakeSets(), true, Options{}, testr.New(t))
	m2.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
	m2.SetTunnelPort("", 0)
	if err := m2.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, def := range chainDefs {
		if f.hasChain(def.table, def.name) {
			t.Errorf("%s still exists", def.name)
		}
		if got := f.rules(def.table, def.hook); len(got) != 0 {
			t.Errorf("%s still holds %q", def.hook, got)
		}
	}
	f.takeCalls()
	if err := m2.Sync(); err != nil {
		t.Fatal(err)
	}
	if calls := f.takeCalls(); len(calls) != 0 {
		t.Fatalf("second pass with everything off made calls %v", calls)
	}
}

func TestCleanupFake(t *testing.T) {
	m, f := fakeManager(t, allOn, true)
	f.chains["filter/FORWARD"] = []string{"-j ACCEPT"}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := m.Cleanup(); err != nil {
			t.Fatal(err)
		}
		if got := f.rules("filter", "FORWARD"); !slices.Equal(got, []string{"-j ACCEPT"}) {
			t.Fatalf("FORWARD = %q after Cleanup", got)
		}
		for _, def := range chainDefs {
			if f.hasChain(def.table, def.name) {
				t.Fatalf("%s still exists", def.name)
			}
		}
	}
}

func TestRunResyncsAndWakesOnChange(t *testing.T) {
	f := newFakeIPT()
	m := newManager(f, newFakeSets(), true, Options{Resync: 50 * time.Millisecond, RestrictTunnelPort: true}, testr.New(t))
	m.SetTunnelPort("udp", 8472)
	m.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet}) // the tunnel rules' families
	runUntilEnd(t, m.Run)

	waitFor(t, "the set and drop rules", func() bool { return len(f.rules("filter", InputChain)) == 2 })
	// A rule deleted by hand is back within a period or so.
	f.mu.Lock()
	f.chains["filter/"+InputChain] = nil
	f.mu.Unlock()
	waitFor(t, "the repaired rules", func() bool { return len(f.rules("filter", InputChain)) == 2 })

	// A setter wakes Run at once even with a long period.
	m2f := newFakeIPT()
	m2s := newFakeSets()
	m2 := newManager(m2f, m2s, true, Options{Resync: time.Hour}, testr.New(t))
	m2.SetTunnelPort("gre", 0)
	m2.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- m2.Run(ctx2) }()
	waitFor(t, "the input chain", func() bool { return m2f.hasChain("filter", InputChain) })
	m2.SetPeers([]netip.Addr{peerA})
	waitFor(t, "the peer in the set", func() bool { got, _ := m2s.members(PeerSet); return len(got) == 1 })
	cancel2()
	select {
	case <-done2:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// runUntilEnd runs run until t ends, then cancels it and fails t unless it returns nil
// within 10 seconds.
func runUntilEnd(t *testing.T, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewWithoutIPTables(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Find(testr.New(t))
	if !errors.Is(err, ErrNoIPTables) {
		t.Fatalf("New = %v, want ErrNoIPTables", err)
	}
}
