package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/weftnet/weft/pkg/subnetenv"
)

// family is the demo network's address families: -family ipv4, dual-stack or ipv6.
type family string

const (
	familyIPv4      family = "ipv4"
	familyDualStack family = "dual-stack"
	familyIPv6      family = "ipv6"
)

const (
	network     = "10.244.0.0/16"    // the IPv4 pod network
	ipv6Network = "fd00:10:244::/56" // the IPv6 pod network
)

// parseFamily reads a -family value.
func parseFamily(s string) (family, error) {
	switch f := family(s); f {
	case familyIPv4, familyDualStack, familyIPv6:
		return f, nil
	}
	return "", fmt.Errorf("-family %q: want ipv4, dual-stack or ipv6", s)
}

func (f family) v4() bool { return f != familyIPv6 }
func (f family) v6() bool { return f != familyIPv4 }

// configJSON is the network config the demo writes, e.g.
// {"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}} for ipv4; dual-stack adds
// "EnableIPv6":true and "IPv6Network", ipv6 also sets "EnableIPv4":false and drops Network.
// The backend name is passed on as given (JSON-quoted): whether weftd knows it, and whether
// it runs the family, is weftd's to say.
func configJSON(f family, backend string) string {
	type backendCfg struct{ Type string }
	cfg := struct {
		EnableIPv4  *bool  `json:",omitempty"`
		Network     string `json:",omitempty"`
		EnableIPv6  bool   `json:",omitempty"`
		IPv6Network string `json:",omitempty"`
		Backend     backendCfg
	}{Backend: backendCfg{backend}}
	if f.v4() {
		cfg.Network = network
	} else {
		off := false
		cfg.EnableIPv4 = &off
	}
	if f.v6() {
		cfg.EnableIPv6, cfg.IPv6Network = true, ipv6Network
	}
	b, err := json.Marshal(cfg)
	if err != nil { // strings and bools always marshal
		panic(err)
	}
	return string(b)
}

// podCIDRs are the pod CIDRs of node i's Node in Kubernetes mode, one per family, IPv4
// first, as kube-controller-manager assigns them: 10.244.<i+1>.0/24, fd00:10:244:<i+1>::/64.
func podCIDRs(f family, i int) []string {
	var out []string
	if f.v4() {
		out = append(out, fmt.Sprintf("10.244.%d.0/24", i+1))
	}
	if f.v6() {
		out = append(out, fmt.Sprintf("fd00:10:244:%x::/64", i+1))
	}
	return out
}

// probeFamily is one address family the matrix and the transfer run over.
type probeFamily struct {
	name string // "IPv4" or "IPv6"
	v6   bool   // use the pods' IPv6 addresses (Pod.V6)
}

// probeFamilies are the families to probe, IPv4 first.
func (f family) probeFamilies() []probeFamily {
	var out []probeFamily
	if f.v4() {
		out = append(out, probeFamily{"IPv4", false})
	}
	if f.v6() {
		out = append(out, probeFamily{"IPv6", true})
	}
	return out
}

// subnets names a lease's subnets of both families, e.g. "10.244.1.0/24 fd00:10:244:1::/64";
// "-" for none.
func subnets(v4, v6 netip.Prefix) string {
	var s []string
	for _, p := range []netip.Prefix{v4, v6} {
		if p.IsValid() {
			s = append(s, p.Masked().String())
		}
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, " ")
}

// envSubnets names the subnet file's subnets: "FLANNEL_SUBNET=10.244.1.1/24
// FLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64", each only when the file has it.
func envSubnets(env subnetenv.Env) string {
	var s []string
	if env.Subnet.IsValid() {
		s = append(s, "FLANNEL_SUBNET="+env.Subnet.String())
	}
	if env.IPv6Subnet.IsValid() {
		s = append(s, "FLANNEL_IPV6_SUBNET="+env.IPv6Subnet.String())
	}
	return strings.Join(s, " ")
}

// publicIPs names a lease's public addresses of the network's families: "public IP
// 192.0.2.1, public IPv6 2001:db8::1".
func publicIPs(f family, v4, v6 string) string {
	var s []string
	if f.v4() {
		s = append(s, "public IP "+v4)
	}
	if f.v6() {
		s = append(s, "public IPv6 "+v6)
	}
	return strings.Join(s, ", ")
}
