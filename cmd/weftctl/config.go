package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/weftnet/weft/backend/backends"
	"github.com/weftnet/weft/subnet"
)

// maxConfigSize bounds what config set reads; a network config is a few hundred bytes.
const maxConfigSize = 1 << 20

// maxSetAttempts bounds how often config set lists again after leases changed between its
// check and its write.
const maxSetAttempts = 5

func runConfigGet(ctx context.Context, c *cli, _ []string) error {
	reg, err := c.registry()
	if err != nil {
		return err
	}
	raw, _, err := reg.GetConfig(ctx)
	if errors.Is(err, subnet.ErrNotFound) {
		return fmt.Errorf("no network config at %s", c.keys.Config)
	}
	if err != nil {
		return c.etcdError(fmt.Errorf("read the network config: %w", err))
	}
	if cfg, _, perr := backends.ParseNetworkConfig(raw); perr != nil {
		fmt.Fprintf(c.stderr, "warning: weftd rejects this config: %v\n", perr)
	} else {
		c.printWarnings(cfg.Warnings)
	}
	out := raw
	if !bytes.HasSuffix(out, []byte("\n")) {
		out = append(slices.Clip(out), '\n')
	}
	_, err = c.stdout.Write(out)
	return err
}

// orphan is a lease the new config would no longer fit.
type orphan struct {
	Subnet     netip.Prefix `json:"subnet"` // zero ("") for an IPv6-only lease
	PublicIP   netip.Addr   `json:"publicIP"`
	IPv6Subnet netip.Prefix `json:"ipv6Subnet,omitzero"`
	PublicIPv6 netip.Addr   `json:"publicIPv6,omitzero"`
	Reserved   bool         `json:"reserved"`
}

func orphanOf(l subnet.Lease) orphan {
	return orphan{Subnet: l.Subnet, PublicIP: l.Attrs.PublicIP, IPv6Subnet: l.IPv6Subnet, PublicIPv6: l.Attrs.PublicIPv6, Reserved: l.Reserved()}
}

// configSetResult is config set's JSON output.
type configSetResult struct {
	Key      string   `json:"key"`
	Revision int64    `json:"revision"`
	Forced   bool     `json:"forced,omitempty"`
	Orphans  []orphan `json:"orphans,omitempty"` // leases that no longer fit (only with --force)
	// Warnings: what weftd will read differently from what was probably meant, or does not
	// implement yet (unknown keys, host bits in Network, ...), as weftd logs them.
	Warnings []string `json:"warnings,omitempty"`
}

func runConfigSet(ctx context.Context, c *cli, args []string) error {
	raw, err := c.readConfigFile(args[0])
	if err != nil {
		return err
	}
	cfg, _, err := backends.ParseNetworkConfig(raw)
	if err != nil {
		return err // weftd's own message: "invalid network config: ..."
	}
	reg, err := c.registry()
	if err != nil {
		return err
	}
	res, err := c.putConfig(ctx, reg, cfg, raw)
	if err != nil {
		return err
	}
	res.Warnings = cfg.Warnings
	if c.opts.output == outputJSON {
		return c.writeJSON(res)
	}
	c.printWarnings(cfg.Warnings)
	if len(res.Orphans) > 0 {
		fmt.Fprintf(c.stderr, "warning: written with --force; %d lease(s) no longer fit it:\n", len(res.Orphans))
		c.printOrphans(c.stderr, res.Orphans)
	}
	fmt.Fprintf(c.stdout, "wrote the network config to %s (revision %d): Network %s, SubnetLen /%d, subnets %s to %s, backend %s\n",
		res.Key, res.Revision, cfg.Network, cfg.SubnetLen, cfg.SubnetMin, cfg.SubnetMax, cfg.BackendType)
	return nil
}

// printWarnings prints the config's warnings to stderr, one a line.
func (c *cli) printWarnings(warnings []string) {
	for _, w := range warnings {
		fmt.Fprintf(c.stderr, "warning: %s\n", w)
	}
}

// readConfigFile reads FILE, or stdin for "-", trimmed of surrounding white space.
func (c *cli) readConfigFile(name string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = c.stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a network config", name, maxConfigSize)
	}
	return bytes.TrimSpace(b), nil
}

// putConfig writes raw unless leases would be orphaned (or --force). The lease check and the
// write are one compare-and-swap (Registry.PutConfig): it succeeds only if no lease was
// created or modified after the listing the check used; otherwise it lists again.
func (c *cli) putConfig(ctx context.Context, reg subnet.Registry, cfg *subnet.Config, raw []byte) (configSetResult, error) {
	key := c.keys.Config
	for attempt := 0; attempt < maxSetAttempts; attempt++ {
		list, err := reg.ListLeases(ctx)
		if err != nil {
			return configSetResult{}, c.etcdError(err)
		}
		if c.afterList != nil {
			c.afterList()
		}
		orphans := findOrphans(cfg, list.Leases)
		if len(orphans) > 0 && !c.opts.force {
			var b bytes.Buffer
			c.printOrphans(&b, orphans)
			return configSetResult{}, fmt.Errorf("refusing to write the config: %d existing lease(s) would no longer fit %s:\n%s"+
				"Delete them first (weftctl unreserve [--force] SUBNET), or use --force: a node whose lease no longer fits\n"+
				"takes a new subnet when weftd restarts, and its old lease stays until it expires",
				len(orphans), configText(cfg), b.String())
		}
		guard := list.Revision
		if c.opts.force {
			guard = 0 // written whatever the leases do meanwhile
		}
		rev, err := reg.PutConfig(ctx, raw, guard)
		if errors.Is(err, subnet.ErrTaken) {
			continue // a lease was created or changed since the listing: check again
		}
		if err != nil {
			return configSetResult{}, c.etcdError(err)
		}
		return configSetResult{Key: key, Revision: rev, Forced: c.opts.force, Orphans: orphans}, nil
	}
	return configSetResult{}, fmt.Errorf("write %s: leases kept changing during %d attempts: %w", key, maxSetAttempts, subnet.ErrTaken)
}

// findOrphans returns the leases cfg does not fit (a subnet of the wrong length or outside
// its network, or not a subnet for exactly the families cfg runs: subnet.Config.Fits), by
// subnet.
func findOrphans(cfg *subnet.Config, leases []subnet.Lease) []orphan {
	var out []orphan
	for _, l := range leases {
		if !cfg.Fits(l) {
			out = append(out, orphanOf(l))
		}
	}
	slices.SortFunc(out, func(a, b orphan) int { return compareSubnets(a.Subnet, a.IPv6Subnet, b.Subnet, b.IPv6Subnet) })
	return out
}

func (c *cli) printOrphans(w io.Writer, orphans []orphan) {
	for _, o := range orphans {
		kind := "lease"
		if o.Reserved {
			kind = "reservation"
		}
		fmt.Fprintf(w, "  %s  %s  (%s)\n", subnetsText(o.Subnet, o.IPv6Subnet),
			subnetsText(netip.PrefixFrom(o.PublicIP, 0), netip.PrefixFrom(o.PublicIPv6, 0)), kind)
	}
}

// comparePrefix orders subnets by address (numerically), then by length. It is safe for
// zero and IPv6 prefixes (from a status document).
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// compareSubnets orders leases by their IPv4 subnet, then their IPv6 subnet; IPv6-only
// leases (no IPv4 subnet) come after the others.
func compareSubnets(a4, a6, b4, b6 netip.Prefix) int {
	if a4.IsValid() != b4.IsValid() {
		if a4.IsValid() {
			return -1
		}
		return 1
	}
	if c := comparePrefix(a4, b4); c != 0 {
		return c
	}
	return comparePrefix(a6, b6)
}

// configText describes the subnets a config hands out: "Network 10.244.0.0/16 with
// SubnetLen /24", its IPv6 counterpart, or both joined by " and ".
func configText(cfg *subnet.Config) string {
	var parts []string
	if cfg.EnableIPv4 {
		parts = append(parts, fmt.Sprintf("Network %s with SubnetLen /%d", cfg.Network, cfg.SubnetLen))
	}
	if cfg.EnableIPv6 {
		parts = append(parts, fmt.Sprintf("IPv6Network %s with IPv6SubnetLen /%d", cfg.IPv6Network, cfg.IPv6SubnetLen))
	}
	return strings.Join(parts, " and ")
}
