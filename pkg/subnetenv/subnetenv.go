// Package subnetenv reads and writes flannel's subnet file (/run/flannel/subnet.env): the
// plain KEY=value lines that the CNI flannel plugin and mk-docker-opts.sh consume.
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

// Env is the content of a subnet file.
type Env struct {
	Network     netip.Prefix // FLANNEL_NETWORK, e.g. 10.244.0.0/16
	Subnet      netip.Prefix // FLANNEL_SUBNET: the node's first address with the subnet length, e.g. 10.244.5.1/24
	MTU         int          // FLANNEL_MTU
	IPMasq      bool         // FLANNEL_IPMASQ
	IPv6Network netip.Prefix // FLANNEL_IPV6_NETWORK, written only when set
	IPv6Subnet  netip.Prefix // FLANNEL_IPV6_SUBNET, written only when set
}

// Marshal renders the file exactly as flanneld does.
func (e Env) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "FLANNEL_NETWORK=%s\n", e.Network)
	fmt.Fprintf(&b, "FLANNEL_SUBNET=%s\n", e.Subnet)
	if e.IPv6Network.IsValid() {
		fmt.Fprintf(&b, "FLANNEL_IPV6_NETWORK=%s\n", e.IPv6Network)
	}
	if e.IPv6Subnet.IsValid() {
		fmt.Fprintf(&b, "FLANNEL_IPV6_SUBNET=%s\n", e.IPv6Subnet)
	}
	fmt.Fprintf(&b, "FLANNEL_MTU=%d\n", e.MTU)
	fmt.Fprintf(&b, "FLANNEL_IPMASQ=%t\n", e.IPMasq)
	return b.Bytes()
}

// Write stores e at path atomically, creating the directory if needed.
func Write(path string, e Env) error {
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
// value is an error naming the key and value. FLANNEL_NETWORK and FLANNEL_SUBNET are required.
func Parse(data []byte) (Env, error) {
	var e Env
	var haveNet, haveSub bool
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
			e.Network, err = netip.ParsePrefix(v)
			haveNet = true
		case "FLANNEL_SUBNET":
			e.Subnet, err = netip.ParsePrefix(v)
			haveSub = true
		case "FLANNEL_IPV6_NETWORK":
			e.IPv6Network, err = netip.ParsePrefix(v)
		case "FLANNEL_IPV6_SUBNET":
			e.IPv6Subnet, err = netip.ParsePrefix(v)
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
	if !haveNet || !haveSub {
		return Env{}, fmt.Errorf("FLANNEL_NETWORK and FLANNEL_SUBNET are required")
	}
	return e, nil
}
