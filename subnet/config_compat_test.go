package subnet

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestConfigCompat holds one row per input: what flanneld's code does with it (a fact, read
// from flanneld's pkg/subnet/config.go), what weft does, and whether they agree. Every row
// that does not agree must be a row of migrating-from-flannel.md's "What differs" (its doc
// text is looked for there), so that the docs and the code cannot drift apart.
func TestConfigCompat(t *testing.T) {
	for _, c := range []struct {
		name     string
		js       string
		flanneld string // what flanneld's code does
		check    func(*Config, error) string
		agree    bool
		doc      string // for a disagreement: text of its row in migrating-from-flannel.md
	}{
		{"minimal config", `{"Network":"10.244.0.0/16"}`,
			"runs the udp backend (no Backend key: its code's default), SubnetLen 24",
			want("udp", 24, ""), true, ""},
		{"keys in any case", `{"network":"10.244.0.0/16","SUBNETLEN":25,"backend":{"type":"host-gw"}}`,
			"matches keys case-insensitively (encoding/json)",
			want("host-gw", 25, ""), true, ""},
		{"Type upper case", `{"Network":"10.244.0.0/16","Backend":{"Type":"VXLAN"}}`,
			"lower-cases the Type: vxlan",
			want("vxlan", 24, ""), true, ""},
		{"unknown key", `{"Network":"10.244.0.0/16","SubnetLength":24,"Backend":{"Type":"vxlan"}}`,
			"ignores it silently",
			want("vxlan", 24, `unknown key "SubnetLength" ignored`), true, ""},
		{"SubnetLen 0", `{"Network":"10.244.0.0/16","SubnetLen":0}`,
			"reads it as unset: 24",
			want("udp", 24, ""), true, ""},
		{"SubnetMin 0.0.0.0", `{"Network":"10.244.0.0/16","SubnetMin":"0.0.0.0","SubnetMax":"0.0.0.0"}`,
			"reads them as unset",
			func(c *Config, err error) string {
				if err != nil || c.SubnetMin.String() != "10.244.1.0" || c.SubnetMax.String() != "10.244.255.0" {
					return "got " + describe(c, err)
				}
				return ""
			}, true, ""},
		{"SubnetLen = Network + 1", `{"Network":"10.244.0.0/16","SubnetLen":17}`,
			`refuses: "network must be able to accommodate at least four subnets"`,
			refused("at least four subnets"), true, ""},
		{"SubnetLen 31", `{"Network":"10.244.0.0/16","SubnetLen":31}`,
			"refuses it (more than 30)",
			refused("at most 30"), true, ""},
		{"Network smaller than /28", `{"Network":"10.244.0.0/29"}`,
			"refuses it",
			refused("too small"), true, ""},
		{"host bits in Network", `{"Network":"10.244.1.5/16"}`,
			"masks them silently: 10.244.0.0/16",
			func(c *Config, err error) string {
				if err != nil || c.Network.String() != "10.244.0.0/16" || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "did you mean 10.244.0.0/16") {
					return "got " + describe(c, err)
				}
				return ""
			}, true, ""},
		{"SubnetMin not aligned", `{"Network":"10.244.0.0/16","SubnetMin":"10.244.1.7"}`,
			"refuses it",
			refused("not aligned"), true, ""},
		{"empty Backend object", `{"Network":"10.244.0.0/16","Backend":{}}`,
			"refuses the empty backend type as unknown",
			func(c *Config, err error) string {
				if err != nil || c.BackendType != "" {
					return "got " + describe(c, err) + " (backends.ParseNetworkConfig refuses the empty type)"
				}
				return ""
			}, true, ""},
		{"EnableNFTables", `{"Network":"10.244.0.0/16","EnableNFTables":true}`,
			"puts its rules in nftables",
			func(c *Config, err error) string {
				if err != nil || !c.EnableNFTables {
					return "got " + describe(c, err)
				}
				return ""
			}, true, ""},
		{"dual stack", `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56"}`,
			"runs IPv4 and IPv6, IPv6SubnetLen 64, from the second /64 to the last",
			want6(true, "fd00::/56", 64, "fd00:0:0:1::", "fd00:0:0:ff::"), true, ""},
		{"IPv6 only", `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/56"}`,
			"runs IPv6 only",
			want6(false, "fd00::/56", 64, "fd00:0:0:1::", "fd00:0:0:ff::"), true, ""},
		{"small IPv6Network", `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/64"}`,
			"IPv6SubnetLen defaults to the network's length + 2 past a /62",
			want6(false, "fd00::/64", 66, "fd00::4000:0:0:0", "fd00::c000:0:0:0"), true, ""},
		{"IPv6SubnetLen 127", `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetLen":127}`,
			"refuses it (more than 126)",
			refused("at most 126"), true, ""},
		{"IPv6Network missing", `{"Network":"10.244.0.0/16","EnableIPv6":true}`,
			"refuses it",
			refused("IPv6Network is missing"), true, ""},
		{"no family", `{"Network":"10.244.0.0/16","EnableIPv4":false}`,
			"refuses a network with neither IPv4 nor IPv6",
			refused("no address family"), true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(c.js))
			if msg := c.check(cfg, err); msg != "" {
				t.Errorf("%s: flanneld %s; weft: %s", c.js, c.flanneld, msg)
			}
			if !c.agree && !docHasRow(t, c.doc) {
				t.Errorf("%s differs from flanneld (%s) but migrating-from-flannel.md has no row %q", c.name, c.flanneld, c.doc)
			}
		})
	}
}

func want(backend string, subnetLen int, warning string) func(*Config, error) string {
	return func(c *Config, err error) string {
		if err != nil || c.BackendType != backend || c.SubnetLen != subnetLen {
			return "got " + describe(c, err)
		}
		if warning == "" && len(c.Warnings) > 0 || warning != "" && (len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], warning)) {
			return "warnings " + strings.Join(c.Warnings, "; ")
		}
		return ""
	}
}

func refused(text string) func(*Config, error) string {
	return func(c *Config, err error) string {
		if err == nil || !strings.Contains(err.Error(), text) {
			return "got " + describe(c, err)
		}
		return ""
	}
}

func describe(c *Config, err error) string {
	if err != nil {
		return err.Error()
	}
	return c.Network.String() + " /" + itoa(c.SubnetLen) + " " + c.BackendType + " warnings: " + strings.Join(c.Warnings, "; ")
}

func itoa(n int) string { return strconv.Itoa(n) }

func docHasRow(t *testing.T, row string) bool {
	b, err := os.ReadFile("../Documentation/migrating-from-flannel.md")
	if err != nil {
		t.Fatal(err)
	}
	_, differs, _ := strings.Cut(string(b), "## What differs")
	return strings.Contains(differs, "| "+row+" |")
}

// want6 checks the IPv6 half of a parsed config, and whether IPv4 runs too.
func want6(v4 bool, network string, bits int, lo, hi string) func(*Config, error) string {
	return func(c *Config, err error) string {
		if err != nil || c.EnableIPv4 != v4 || !c.EnableIPv6 || c.IPv6Network.String() != network ||
			c.IPv6SubnetLen != bits || c.IPv6SubnetMin.String() != lo || c.IPv6SubnetMax.String() != hi {
			return "got " + describe(c, err) + fmt.Sprintf(" (IPv6: %v %s /%d %s–%s)", c != nil && c.EnableIPv6, c.IPv6Network, c.IPv6SubnetLen, c.IPv6SubnetMin, c.IPv6SubnetMax)
		}
		return ""
	}
}
