package iptables

import (
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	goipt "github.com/coreos/go-iptables/iptables"

	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/test/nstest"
)

// The IPv6 side of iptables mode, with the real ip6tables and ip_set inside throwaway
// namespaces, guarded as the IPv4 tests are (nsRunner refuses other namespaces) and with
// the root namespace's ip6tables rules compared before and after.

var (
	testNetwork6 = netip.MustParsePrefix("fd00:10:244::/56")
	testSubnet6  = netip.MustParsePrefix("fd00:10:244:3::/64")
	peer6A       = netip.MustParseAddr("2001:db8::2")
	peer6B       = netip.MustParseAddr("2001:db8::3")
	dualStack    = firewall.Overlay{Network: testNetwork, Subnet: testSubnet, IPv6Network: testNetwork6, IPv6Subnet: testSubnet6}
	ipv6Only     = firewall.Overlay{IPv6Network: testNetwork6, IPv6Subnet: testSubnet6}
	ipv4Only     = firewall.Overlay{Network: testNetwork, Subnet: testSubnet}
)

// nsEnv6 is an nsEnv with the ip6tables of the same front end, guarded the same way.
type nsEnv6 struct {
	*nsEnv
	bin6 string
	r6   *nsRunner
}

func newNSEnv6(t *testing.T, bin string) *nsEnv6 {
	t.Helper()
	bin6 := strings.Replace(bin, "iptables", "ip6tables", 1)
	path6, err := exec.LookPath(bin6)
	if err != nil {
		t.Skipf("%s not installed: %v", bin6, err)
	}
	root6Unchanged(t)
	e := newNSEnv(t, bin)
	ipt6, err := goipt.New(goipt.IPFamily(goipt.ProtocolIPv6), goipt.Path(path6), goipt.Timeout(lockWaitSeconds))
	if err != nil {
		t.Fatal(err)
	}
	restore6, _ := exec.LookPath(bin6 + "-restore")
	r6 := &nsRunner{ipt: ipt6, restore: cmdRunner{IPTables: ipt6, restorePath: restore6}, ns: e.r.ns}
	return &nsEnv6{nsEnv: e, bin6: bin6, r6: r6}
}

func (e *nsEnv6) manager6(t *testing.T, opts Options) *Manager {
	m := e.manager(t, opts)
	m.setIPv6(e.r6, e.r6.ipt.HasRandomFully())
	return m
}

// run6 runs the ip6tables binary by hand in the namespace.
func (e *nsEnv6) run6(t *testing.T, args ...string) string {
	t.Helper()
	return e.runTool(t, append([]string{e.bin6, "-w"}, args...)...)
}

func (e *nsEnv6) rules6(t *testing.T, table, chain string) []string {
	t.Helper()
	return e.listChain(t, e.bin6, table, chain)
}

// save6 is the namespace's ip6tables-save output.
func (e *nsEnv6) save6(t *testing.T) string {
	t.Helper()
	return e.runTool(t, e.bin6+"-save")
}

// members6 lists weft-peers6 with the ipset tool; it fails t unless the set is of family
// inet6. ok is false when there is no set.
func (e *nsEnv6) members6(t *testing.T) (members []string, ok bool) {
	t.Helper()
	return e.setMembers(t, PeerSet6, "Type: hash:ip", "family inet6")
}

// check6 fails t unless each of weft's ip6tables chains holds what the IPv6 plan wants.
func (e *nsEnv6) check6(t *testing.T, m *Manager) {
	t.Helper()
	m.syncMu.Lock()
	c := m.v6.capsLocked()
	m.syncMu.Unlock()
	for _, p := range desired(m.opts, m.Inputs(), c) {
		if p.action != firewall.Manage {
			continue
		}
		if got, want := e.rules6(t, p.def.table, p.def.name), renderAll(p.rules); !slices.Equal(got, want) {
			t.Errorf("ip6tables %s %s holds\n%q\nwant\n%q", p.def.table, p.def.name, got, want)
		}
	}
}

// root6Unchanged fails t if the root namespace's ip6tables rules or ipsets change while
// it runs.
func root6Unchanged(t *testing.T) {
	t.Helper()
	rootDumpUnchanged(t, "ip6tables rules or ipsets", "ip6tables-save", "ip6tables-legacy-save", "ipset")
}

// TestNSIPv6Families: a dual-stack network gets weft's chains in iptables and ip6tables
// (with the IPv6 network and subnet in the IPv6 ones) and each family's peers in its own
// set; an IPv6-only network loses the IPv4 chains and set, an IPv4-only one the IPv6 ones;
// deleted IPv6 rules, jumps and set members come back as repairs; Cleanup leaves nothing.
func TestNSIPv6Families(t *testing.T) {
	for _, bin := range binaries {
		t.Run(bin, func(t *testing.T) {
			e := newNSEnv6(t, bin)
			var repairs atomic.Int64
			opts := allOn
			opts.OnRepair = func() { repairs.Add(1) }
			m := e.manager6(t, opts)
			m.SetNetwork(dualStack)
			m.SetTunnelPort("udp", 8472)
			m.SetPeers([]netip.Addr{peer6B, peerA, peer6A, peerB})
			e.do(t, m.Sync)
			e.checkChain(t, m, &natDef)
			e.checkChain(t, m, &inputDef)
			e.check6(t, m)
			nat6 := strings.Join(e.rules6(t, "nat", NATChain), "\n")
			for _, want := range []string{
				"-s fd00:10:244::/56 ! -d ff00::/8 -m comment --comment \"weft: masq network to outside\" -j MASQUERADE",
				"! -s fd00:10:244::/56 -d fd00:10:244:3::/64 -m comment",
			} {
				if !strings.Contains(nat6, want) {
					t.Errorf("ip6tables nat %s lacks %q:\n%s", NATChain, want, nat6)
				}
			}
			if in6 := e.rules6(t, "filter", InputChain); len(in6) != 2 || !strings.Contains(in6[0], "--match-set "+PeerSet6+" src") {
				t.Errorf("ip6tables input chain: %q", in6)
			}
			if got, _ := e.members6(t); !slices.Equal(got, []string{peer6A.String(), peer6B.String()}) {
				t.Errorf("%s holds %q", PeerSet6, got)
			}
			if got, _ := e.members(t); !slices.Equal(got, []string{peerA.String(), peerB.String()}) {
				t.Errorf("%s holds %q", PeerSet, got)
			}
			if repairs.Load() != 0 {
				t.Fatal("installing counted as a repair")
			}

			// Deleted by hand: a v6 rule, the v6 forward jump, a v6 set member.
			e.run6(t, "-t", "nat", "-D", NATChain, "3")
			e.run6(t, "-t", "filter", "-D", "FORWARD", "-m", "comment", "--comment", "weft: forward", "-j", ForwardChain)
			e.runTool(t, "ipset", "del", PeerSet6, peer6A.String())
			e.do(t, m.Sync)
			e.check6(t, m)
			if !strings.Contains(e.save6(t), "-A FORWARD -m comment --comment \"weft: forward\" -j "+ForwardChain) {
				t.Errorf("v6 forward jump not put back:\n%s", e.save6(t))
			}
			if got, _ := e.members6(t); len(got) != 2 {
				t.Errorf("%s after repair holds %q", PeerSet6, got)
			}
			if got := repairs.Load(); got != 3 {
				t.Errorf("%d repairs counted, want 3", got)
			}
			// An idle pass changes nothing in either family.
			e.r.takeCalls()
			e.r6.takeCalls()
			e.do(t, m.Sync)
			if mod := append(modifyingCalls(e.r.takeCalls()), modifyingCalls(e.r6.takeCalls())...); len(mod) != 0 {
				t.Fatalf("idle pass modified: %v", mod)
			}

			// IPv6 only: the IPv4 chains and set go, the IPv6 ones stay.
			m.SetNetwork(ipv6Only)
			e.do(t, m.Sync)
			e.check6(t, m)
			if save, _ := nstest.Run(e.name, bin+"-save"); strings.Contains(save, "WEFT") {
				t.Errorf("IPv4 chains left in an IPv6-only network:\n%s", save)
			}
			if _, ok := e.members(t); ok {
				t.Errorf("%s left in an IPv6-only network", PeerSet)
			}
			if !strings.Contains(e.save6(t), "-A WEFT-POSTRTG") {
				t.Errorf("IPv6 chains gone:\n%s", e.save6(t))
			}

			// IPv4 only: the reverse.
			m.SetNetwork(ipv4Only)
			e.do(t, m.Sync)
			e.checkChain(t, m, &natDef)
			if strings.Contains(e.save6(t), "WEFT") {
				t.Errorf("IPv6 chains left in an IPv4-only network:\n%s", e.save6(t))
			}
			if _, ok := e.members6(t); ok {
				t.Errorf("%s left in an IPv4-only network", PeerSet6)
			}

			// Cleanup removes both families.
			m.SetNetwork(dualStack)
			e.do(t, m.Sync)
			e.do(t, m.Cleanup)
			save, _ := nstest.Run(e.name, bin+"-save")
			if strings.Contains(save, "WEFT") || strings.Contains(e.save6(t), "WEFT") {
				t.Fatalf("chains left after Cleanup:\n%s\n%s", save, e.save6(t))
			}
			if _, ok := e.members6(t); ok {
				t.Fatalf("%s left after Cleanup", PeerSet6)
			}
		})
	}
}
