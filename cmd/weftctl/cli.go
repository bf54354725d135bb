package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcdv3"
)

// cli is what a command runs with: its options, its streams and, opened on first use, the
// etcd registry.
type cli struct {
	opts   *options
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time // time.Now when nil

	// afterList, if set, runs in config set between listing the leases and the
	// transaction (tests use it to create a lease in that window).
	afterList func()

	// The store, opened on first use by registry(). Commands reach etcd only through the
	// subnet.Registry contract; keys names etcd keys in messages (etcdv3 spells the layout).
	reg    subnet.Registry // nil until registry() opened it
	keys   etcdv3.Keys
	closer func() error
}

func (c *cli) clock() time.Time {
	if c.now == nil {
		return time.Now()
	}
	return c.now()
}

// registry opens the etcd registry the flags describe (once).
func (c *cli) registry() (subnet.Registry, error) {
	if c.reg != nil {
		return c.reg, nil
	}
	log := logr.Discard()
	if c.opts.verbose {
		log = funcr.New(func(prefix, args string) {
			fmt.Fprintln(c.stderr, strings.TrimSpace(prefix+" "+args))
		}, funcr.Options{})
	}
	reg, err := etcdv3.New(c.opts.etcdConfig, log)
	if err != nil {
		return nil, err
	}
	c.reg, c.keys, c.closer = reg, reg.Keys(), reg.Close
	return reg, nil
}

func (c *cli) close() {
	if c.closer != nil {
		_ = c.closer()
	}
}

// etcdError adds where etcd was expected to an error that says only that time ran out.
func (c *cli) etcdError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (no answer from etcd at %s within --timeout %s)", err, c.opts.etcd.Endpoints, c.opts.timeout)
	}
	return err
}

// leaseKey is the full etcd key of the lease of sn (IPv4) and sn6 (IPv6), either zero, for
// messages.
func (c *cli) leaseKey(sn, sn6 netip.Prefix) string {
	return c.keys.Lease(subnet.LeaseKey(sn, sn6))
}

// readConfig reads and parses the stored network config with flannel's rules
// (subnet.ParseConfig; the backend's own keys are not checked, they do not matter to
// subnets).
func (c *cli) readConfig(ctx context.Context, reg subnet.Registry) (*subnet.Config, error) {
	raw, _, err := reg.GetConfig(ctx)
	if errors.Is(err, subnet.ErrNotFound) {
		return nil, fmt.Errorf("no network config at %s (write one with weftctl config set)", c.keys.Config)
	}
	if err != nil {
		return nil, c.etcdError(fmt.Errorf("read the network config: %w", err))
	}
	cfg, err := subnet.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("the network config at %s: %w", c.keys.Config, err)
	}
	return cfg, nil
}

func (c *cli) writeJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // lease keys hold "&" (dual stack); no HTML reads this

	return enc.Encode(v)
}

// table returns a tabwriter on stdout; call Flush when done.
func (c *cli) table() *tabwriter.Writer {
	return tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
}

// parseSubnets accepts a lease's subnets as a CIDR, IPv4 (10.244.5.0/24) or IPv6
// (fd00:10:0:5::/64, an IPv6-only lease), or as a lease key: 10.244.5.0-24,
// 10.244.5.0-24&fd00:10:0:5::-64 (dual stack) or 0.0.0.0-0&fd00:10:0:5::-64 (IPv6 only).
// sn (IPv4) or sn6 (IPv6) is zero when absent; each is a network address.
func parseSubnets(s string) (sn, sn6 netip.Prefix, err error) {
	const forms = "an IPv4 or IPv6 CIDR like 10.244.5.0/24 or fd00:10:0:5::/64, or a lease key like 10.244.5.0-24 or 10.244.5.0-24&fd00:10:0:5::-64"
	if strings.Contains(s, "-") && !strings.Contains(s, "/") {
		v4, v6, err := subnet.ParseLeaseKey(s)
		if err != nil || !v4.IsValid() && !v6.IsValid() || v4.IsValid() && v4.Bits() == 0 {
			return netip.Prefix{}, netip.Prefix{}, usagef("invalid subnet %q: not %s", s, forms)
		}
		return v4, v6, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Addr().Is4In6() {
		return netip.Prefix{}, netip.Prefix{}, usagef("invalid subnet %q: not %s", s, forms)
	}
	if p.Masked() != p {
		return netip.Prefix{}, netip.Prefix{}, usagef("invalid subnet %q: not a network address (did you mean %s?)", s, p.Masked())
	}
	if p.Addr().Is4() {
		return p, netip.Prefix{}, nil
	}
	return netip.Prefix{}, p, nil
}

// parseIPv6Subnet accepts an IPv6 subnet as a CIDR (fd00:10:0:5::/64); it must be a
// network address. what names the value in messages.
func parseIPv6Subnet(what, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() {
		return netip.Prefix{}, usagef("invalid %s %q: not an IPv6 CIDR like fd00:10:0:5::/64", what, s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, usagef("invalid %s %q: not a network address (did you mean %s?)", what, s, p.Masked())
	}
	return p, nil
}

// parsePublicIP accepts a unicast address of the family asked for: IPv4, or IPv6 when v6.
// what names the value in messages.
func parsePublicIP(what, s string, v6 bool) (netip.Addr, error) {
	family := "IPv4"
	if v6 {
		family = "IPv6"
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Is4() == v6 || a.Is4In6() || a.Zone() != "" || a.IsUnspecified() {
		return netip.Addr{}, usagef("invalid %s %q: not an %s address", what, s, family)
	}
	return a, nil
}

// humanDuration prints a time to expiry: whole seconds, "expired" when past.
func humanDuration(d time.Duration) string {
	if d <= 0 {
		return "expired"
	}
	return d.Round(time.Second).String()
}

// dash prints an empty string as "-" in tables.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
