package iptables

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/weftnet/weft/pkg/firewall"
)

// natRules, forwardRules and inputRules render the plan's parts as the Manager does; the
// input rules without ip_set (one rule per block of peers).
func natRules(network, subnet netip.Prefix, randomFully bool) ([][]string, error) {
	r, err := firewall.MasqRules(firewall.IPv4, network, subnet, true)
	return renderRules(r, nil, caps{randomFully: randomFully}), err
}

func forwardRules(network netip.Prefix) ([][]string, error) {
	if err := firewall.CheckNetwork(firewall.IPv4, network, network); err != nil {
		return nil, err
	}
	return renderRules(firewall.ForwardRules(network), nil, caps{}), nil
}

func inputRules(peers []netip.Addr, proto string, port int, restrict bool) ([][]string, error) {
	r, err := firewall.TunnelRules(proto, port, restrict)
	return renderRules(r, firewall.PeerSet(peers), caps{}), err
}

func renderAll(rules [][]string) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = render(r)
	}
	return out
}

func TestNATRules(t *testing.T) {
	for _, tc := range []struct {
		name            string
		network, subnet string
		randomFully     bool
		want            []string
		wantErr         bool
	}{{
		name: "flanneld order, random-fully", network: "10.244.0.0/16", subnet: "10.244.3.0/24", randomFully: true,
		want: []string{
			`-m mark --mark 0x4000/0x4000 -m comment --comment "weft: kube-proxy marked, no masq" -j RETURN`,
			`-s 10.244.3.0/24 -d 10.244.0.0/16 -m comment --comment "weft: own subnet to network, no masq" -j RETURN`,
			`-s 10.244.0.0/16 -d 10.244.3.0/24 -m comment --comment "weft: network to own subnet, no masq" -j RETURN`,
			`! -s 10.244.0.0/16 -d 10.244.3.0/24 -m comment --comment "weft: outside to own subnet, no masq" -j RETURN`,
			`-s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "weft: masq network to outside" -j MASQUERADE --random-fully`,
			`! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "weft: masq outside to network" -j MASQUERADE --random-fully`,
		},
	}, {
		name: "host bits dropped, no random-fully", network: "10.1.2.3/16", subnet: "10.1.7.1/24",
		want: []string{
			`-m mark --mark 0x4000/0x4000 -m comment --comment "weft: kube-proxy marked, no masq" -j RETURN`,
			`-s 10.1.7.0/24 -d 10.1.0.0/16 -m comment --comment "weft: own subnet to network, no masq" -j RETURN`,
			`-s 10.1.0.0/16 -d 10.1.7.0/24 -m comment --comment "weft: network to own subnet, no masq" -j RETURN`,
			`! -s 10.1.0.0/16 -d 10.1.7.0/24 -m comment --comment "weft: outside to own subnet, no masq" -j RETURN`,
			`-s 10.1.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "weft: masq network to outside" -j MASQUERADE`,
			`! -s 10.1.0.0/16 -d 10.1.0.0/16 -m comment --comment "weft: masq outside to network" -j MASQUERADE`,
		},
	}, {
		name: "subnet outside network", network: "10.244.0.0/16", subnet: "10.245.3.0/24", wantErr: true,
	}, {
		name: "subnet wider than network", network: "10.244.0.0/16", subnet: "10.0.0.0/8", wantErr: true,
	}, {
		name: "IPv6 network", network: "fd00::/48", subnet: "fd00::/64", wantErr: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := natRules(netip.MustParsePrefix(tc.network), netip.MustParsePrefix(tc.subnet), tc.randomFully)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := renderAll(rules); !slices.Equal(got, tc.want) {
				t.Fatalf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestForwardRules(t *testing.T) {
	rules, err := forwardRules(netip.MustParsePrefix("10.244.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`-s 10.244.0.0/16 -m comment --comment "weft: forward from network" -j ACCEPT`,
		`-d 10.244.0.0/16 -m comment --comment "weft: forward to network" -j ACCEPT`,
	}
	if got := renderAll(rules); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := forwardRules(netip.Prefix{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero network: err = %v, want ErrInvalid", err)
	}
}

func TestInputRules(t *testing.T) {
	a := netip.MustParseAddr
	peers := []netip.Addr{a("192.0.2.9"), a("192.0.2.10"), a("192.0.2.9"), a("::ffff:198.51.100.1"), a("fd00::1"), {}}
	for _, tc := range []struct {
		name     string
		peers    []netip.Addr
		proto    string
		port     int
		restrict bool
		want     []string
		wantErr  bool
	}{{
		name: "udp, sorted, deduplicated, v4 only", peers: peers, proto: "udp", port: 8285,
		want: []string{
			`-s 192.0.2.9/32 -p udp -m udp --dport 8285 -m comment --comment "weft: tunnel from peer" -j ACCEPT`,
			`-s 192.0.2.10/32 -p udp -m udp --dport 8285 -m comment --comment "weft: tunnel from peer" -j ACCEPT`,
			`-s 198.51.100.1/32 -p udp -m udp --dport 8285 -m comment --comment "weft: tunnel from peer" -j ACCEPT`,
		},
	}, {
		name: "udp restricted", peers: peers[:1], proto: "udp", port: 8472, restrict: true,
		want: []string{
			`-s 192.0.2.9/32 -p udp -m udp --dport 8472 -m comment --comment "weft: tunnel from peer" -j ACCEPT`,
			`-p udp -m udp --dport 8472 -m comment --comment "weft: tunnel from non-peer, drop" -j DROP`,
		},
	}, {
		name: "gre restricted, no peers", proto: "gre", restrict: true,
		want: []string{`-p gre -m comment --comment "weft: tunnel from non-peer, drop" -j DROP`},
	}, {
		name: "gre", peers: peers[:2], proto: "gre",
		want: []string{
			`-s 192.0.2.9/32 -p gre -m comment --comment "weft: tunnel from peer" -j ACCEPT`,
			`-s 192.0.2.10/32 -p gre -m comment --comment "weft: tunnel from peer" -j ACCEPT`,
		},
	}, {
		name: "no peers, not restricted", proto: "udp", port: 8285, want: []string{},
	}, {
		name: "udp port 0", proto: "udp", wantErr: true,
	}, {
		name: "udp port too big", proto: "udp", port: 65536, wantErr: true,
	}, {
		name: "unknown protocol", proto: "tcp", port: 1, wantErr: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := inputRules(tc.peers, tc.proto, tc.port, tc.restrict)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := renderAll(rules); !slices.Equal(got, tc.want) {
				t.Fatalf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
	// The GRE rule is written by number, so it needs no /etc/protocols entry.
	rules, _ := inputRules(peers[:1], "gre", 0, false)
	if !slices.Contains(rules[0], "47") {
		t.Fatalf("GRE rule %q does not name protocol 47", rules[0])
	}
}

// TestInputRulesWithSet: with ip_set, one rule matches the set whatever the peers.
func TestInputRulesWithSet(t *testing.T) {
	for _, tc := range []struct {
		proto    string
		port     int
		restrict bool
		want     []string
	}{{
		proto: "udp", port: 8472, restrict: true, want: []string{
			`-p udp -m set --match-set weft-peers src -m udp --dport 8472 -m comment --comment "weft: tunnel from peer" -j ACCEPT`,
			`-p udp -m udp --dport 8472 -m comment --comment "weft: tunnel from non-peer, drop" -j DROP`,
		},
	}, {
		proto: "gre", want: []string{`-p gre -m set --match-set weft-peers src -m comment --comment "weft: tunnel from peer" -j ACCEPT`},
	}} {
		r, err := firewall.TunnelRules(tc.proto, tc.port, tc.restrict)
		if err != nil {
			t.Fatal(err)
		}
		for _, peers := range [][]netip.Addr{nil, scalePeers(2000, 2)} {
			if got := renderAll(renderRules(r, peers, caps{ipset: true})); !slices.Equal(got, tc.want) {
				t.Errorf("%s with %d peers:\n%q\nwant\n%q", tc.proto, len(peers), got, tc.want)
			}
		}
	}
}

func TestDesired(t *testing.T) {
	type state = firewall.Inputs
	const leave, manage, remove = firewall.Leave, firewall.Manage, firewall.Remove
	type action = firewall.Action
	known := state{
		Overlay:   firewall.Overlay{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.3.0/24")},
		TunnelSet: true, TunnelProto: "udp", TunnelPort: 8285,
	}
	for _, tc := range []struct {
		name string
		opts Options
		s    state
		want [3]action // nat, forward, input
		errs [3]bool
	}{
		{"nothing known yet", Options{IPMasq: true, ForwardRules: true}, state{}, [3]action{leave, leave, leave}, [3]bool{}},
		{"features off", Options{}, state{}, [3]action{remove, remove, leave}, [3]bool{}},
		{"all known", Options{IPMasq: true, ForwardRules: true}, known, [3]action{manage, manage, manage}, [3]bool{}},
		{"no tunnel", Options{IPMasq: true}, state{Overlay: known.Overlay, TunnelSet: true},
			[3]action{manage, remove, remove}, [3]bool{}},
		{"bad tunnel left alone", Options{IPMasq: true}, state{Overlay: known.Overlay, TunnelSet: true, TunnelProto: "sctp"},
			[3]action{manage, remove, leave}, [3]bool{false, false, true}},
		{"bad subnet left alone", Options{IPMasq: true, ForwardRules: true}, state{Overlay: firewall.Overlay{Network: known.Network, Subnet: netip.MustParsePrefix("10.9.0.0/24")}},
			[3]action{leave, manage, leave}, [3]bool{true, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plans := desired(tc.opts, tc.s, caps{randomFully: true, ipset: true})
			for i, p := range plans {
				if p.def != chainDefs[i] {
					t.Errorf("plan %d is for %s, want %s", i, p.def.name, chainDefs[i].name)
				}
				if p.action != tc.want[i] || (p.err != nil) != tc.errs[i] {
					t.Errorf("%s: action %d err %v; want action %d, error %v", p.def.name, p.action, p.err, tc.want[i], tc.errs[i])
				}
				if (p.action == manage) != (p.rules != nil) {
					t.Errorf("%s: action %d with %d rules", p.def.name, p.action, len(p.rules))
				}
			}
		})
	}
}
