// Package subnetenv reads and writes flannel's subnet file (/run/flannel/subnet.env): the
// plain KEY=value lines that the CNI flannel plugin and mk-docker-opts.sh consume.
//
// As flanneld's WriteSubnetFile, the file holds FLANNEL_NETWORK and FLANNEL_SUBNET only when
// the network runs IPv4, FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET only when it runs
// IPv6, in that order, then FLANNEL_MTU and FLANNEL_IPMASQ. An IPv6-only network's file has
// no FLANNEL_NETWORK nor FLANNEL_SUBNET.
//
// Writes are atomic (temp file in the same directory, fsync, rename), so a reader never sees
// a half-written file. Parsing never evaluates anything: it is a strict line parser.
package subnetenv

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Env is the content of a subnet file. A family is present when its network is set: the
// IPv4 pair is zero in an IPv6-only network, the IPv6 pair in an IPv4-only one.
type Env struct {
	Network     netip.Prefix // FLANNEL_NETWORK, e.g. 10.244.0.0/16; zero when IPv4 is off
	Subnet      netip.Prefix // FLANNEL_SUBNET: the node's first address with the subnet length, e.g. 10.244.5.1/24
	MTU         int          // FLANNEL_MTU
	IPMasq      bool         // FLANNEL_IPMASQ
	IPv6Network netip.Prefix // FLANNEL_IPV6_NETWORK, e.g. fd00:10::/56; zero when IPv6 is off
	IPv6Subnet  netip.Prefix // FLANNEL_IPV6_SUBNET: the node's first IPv6 address with the subnet length, e.g. fd00:10:0:5::1/64
}

// HasIPv4 tells whether the file carries the IPv4 pair (FLANNEL_NETWORK, FLANNEL_SUBNET).
func (e Env) HasIPv4() bool { return e.Network.IsValid() || e.Subnet.IsValid() }

// HasIPv6 tells whether the file carries the IPv6 pair (FLANNEL_IPV6_NETWORK,
// FLANNEL_IPV6_SUBNET).
func (e Env) HasIPv6() bool { return e.IPv6Network.IsValid() || e.IPv6Subnet.IsValid() }

// Validate checks what Parse checks: at least one family, each present family complete and
// of the right address family, and an MTU in 68-65535.
func (e Env) Validate() error {
	if !e.HasIPv4() && !e.HasIPv6() {
		return fmt.Errorf("neither FLANNEL_NETWORK and FLANNEL_SUBNET nor FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET are set")
	}
	if e.HasIPv4() {
		if err := checkPair("FLANNEL_NETWORK", e.Network, "FLANNEL_SUBNET", e.Subnet, false); err != nil {
			return err
		}
	}
	if e.HasIPv6() {
		if err := checkPair("FLANNEL_IPV6_NETWORK", e.IPv6Network, "FLANNEL_IPV6_SUBNET", e.IPv6Subnet, true); err != nil {
			return err
		}
	}
	if e.MTU < 68 || e.MTU > 65535 {
		return fmt.Errorf("FLANNEL_MTU=%d is out of range 68-65535", e.MTU)
	}
	return nil
}

// checkPair checks that a family's network and subnet are both set and of the family.
func checkPair(netKey string, network netip.Prefix, subKey string, sub netip.Prefix, v6 bool) error {
	for _, kv := range []struct {
		key string
		p   netip.Prefix
	}{{netKey, network}, {subKey, sub}} {
		if !kv.p.IsValid() {
			return fmt.Errorf("%s is missing (%s and %s go together)", kv.key, netKey, subKey)
		}
		if err := checkFamily(kv.p, v6); err != nil {
			return fmt.Errorf("%s=%q is malformed: %v", kv.key, kv.p, err)
		}
	}
	return nil
}

// checkFamily refuses an IPv6 prefix where IPv4 is wanted and the reverse (an IPv4-mapped
// IPv6 address counts as neither).
func checkFamily(p netip.Prefix, v6 bool) error {
	switch a := p.Addr(); {
	case v6 && (!a.Is6() || a.Is4In6()):
		return fmt.Errorf("not an IPv6 prefix")
	case !v6 && !a.Is4():
		return fmt.Errorf("not an IPv4 prefix")
	}
	return nil
}

// Marshal renders the file exactly as flanneld does: the IPv4 lines only when the IPv4
// pair is set, the IPv6 lines only when the IPv6 pair is.
func (e Env) Marshal() []byte {
	var b bytes.Buffer
	if e.HasIPv4() {
		fmt.Fprintf(&b, "FLANNEL_NETWORK=%s\n", e.Network)
		fmt.Fprintf(&b, "FLANNEL_SUBNET=%s\n", e.Subnet)
	}
	if e.HasIPv6() {
		fmt.Fprintf(&b, "FLANNEL_IPV6_NETWORK=%s\n", e.IPv6Network)
		fmt.Fprintf(&b, "FLANNEL_IPV6_SUBNET=%s\n", e.IPv6Subnet)
	}
	fmt.Fprintf(&b, "FLANNEL_MTU=%d\n", e.MTU)
	fmt.Fprintf(&b, "FLANNEL_IPMASQ=%t\n", e.IPMasq)
	return b.Bytes()
}

// Write stores e at path atomically, creating the directory if needed. An e that Validate
// refuses is not written (a file the CNI plugin could not read is worse than the old one).
func Write(path string, e Env) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("subnet file %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("subnet file directory %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("subnet file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(e.Marshal()); err != nil {
		tmp.Close()
		return fmt.Errorf("subnet file %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("subnet file %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("subnet file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("subnet file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("subnet file %s: %w", path, err)
	}
	return nil
}

// Read parses the subnet file at path.
func Read(path string) (Env, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Env{}, err
	}
	e, err := Parse(data)
	if err != nil {
		return Env{}, fmt.Errorf("subnet file %s: %w", path, err)
	}
	return e, nil
}

// Parse parses subnet-file content strictly: KEY=value lines, blank lines and # comments;
// unknown keys are ignored (other tools may add some), but a known key with a malformed
// value is an error naming the key and value. At least one family is required: both
// FLANNEL_NETWORK and FLANNEL_SUBNET (IPv4 prefixes), or both FLANNEL_IPV6_NETWORK and
// FLANNEL_IPV6_SUBNET (IPv6 prefixes), or all four. FLANNEL_MTU may be absent (MTU 0).
func Parse(data []byte) (Env, error) {
	var e Env
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return Env{}, fmt.Errorf("line %d %q is not KEY=value", n, line)
		}
		var err error
		switch k {
		case "FLANNEL_NETWORK":
			e.Network, err = parsePrefix(v, false)
		case "FLANNEL_SUBNET":
			e.Subnet, err = parsePrefix(v, false)
		case "FLANNEL_IPV6_NETWORK":
			e.IPv6Network, err = parsePrefix(v, true)
		case "FLANNEL_IPV6_SUBNET":
			e.IPv6Subnet, err = parsePrefix(v, true)
		case "FLANNEL_MTU":
			e.MTU, err = strconv.Atoi(v)
			if err == nil && (e.MTU < 68 || e.MTU > 65535) {
				err = fmt.Errorf("out of range")
			}
		case "FLANNEL_IPMASQ":
			e.IPMasq, err = strconv.ParseBool(v)
			if v != "true" && v != "false" {
				err = fmt.Errorf("want true or false")
			}
		}
		if err != nil {
			return Env{}, fmt.Errorf("%s=%q is malformed: %v", k, v, err)
		}
	}
	if err := sc.Err(); err != nil {
		return Env{}, err
	}
	if !e.HasIPv4() && !e.HasIPv6() {
		return Env{}, fmt.Errorf("FLANNEL_NETWORK and FLANNEL_SUBNET (or FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET) are required")
	}
	if e.HasIPv4() {
		if err := checkPair("FLANNEL_NETWORK", e.Network, "FLANNEL_SUBNET", e.Subnet, false); err != nil {
			return Env{}, err
		}
	}
	if e.HasIPv6() {
		if err := checkPair("FLANNEL_IPV6_NETWORK", e.IPv6Network, "FLANNEL_IPV6_SUBNET", e.IPv6Subnet, true); err != nil {
			return Env{}, err
		}
	}
	return e, nil
}

// parsePrefix parses one of the four prefix values, of the family asked for.
func parsePrefix(v string, v6 bool) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return netip.Prefix{}, err
	}
	return p, checkFamily(p, v6)
}
