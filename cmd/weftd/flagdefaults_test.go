package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// flanneldDefaults lists every flag flanneld has that weftd shares, with flanneld's default
// as its flag package prints it (flag.Flag.DefValue), read from flannel's main.go (v0.2x:
// the flannelFlags block of init) and FLANNEL-COMPAT.md. A repeatable flag's default is
// "[]" there too: flanneld's flagSlice prints fmt.Sprintf("%v", []string(nil)). v, vmodule
// and log_backtrace_at are klog's, which flanneld copies into its flag set (copyFlag) with
// klog's defaults.
//
// subnet-lease-ttl is no flanneld flag: flanneld's lease TTL is fixed at 86400 s
// (FLANNEL-COMPAT.md, etcd section); weftd's hidden flag must default to it.
var flanneldDefaults = []struct{ name, def string }{
	{"etcd-endpoints", "http://127.0.0.1:4001,http://127.0.0.1:2379"},
	{"etcd-prefix", "/coreos.com/network"},
	{"etcd-keyfile", ""},
	{"etcd-certfile", ""},
	{"etcd-cafile", ""},
	{"etcd-username", ""},
	{"etcd-password", ""},
	{"iface", "[]"},
	{"iface-regex", "[]"},
	{"iface-can-reach", ""},
	{"subnet-file", "/run/flannel/subnet.env"},
	{"public-ip", ""},
	{"public-ipv6", ""},
	{"subnet-lease-renew-margin", "60"},
	{"ip-masq", "false"},
	{"ip-masq-fully-random-disable", "false"},
	{"kube-subnet-mgr", "false"},
	{"kube-api-url", ""},
	{"kube-annotation-prefix", "flannel.alpha.coreos.com"},
	{"kubeconfig-file", ""},
	{"version", "false"},
	{"healthz-ip", "0.0.0.0"},
	{"healthz-port", "0"},
	{"iptables-resync", "5"},
	{"iptables-forward-rules", "true"},
	{"ip-blackhole-route", "false"},
	{"net-config-path", "/etc/kube-flannel/net-conf.json"},
	{"set-node-network-unavailable", "true"},
	{"v", "0"},
	{"vmodule", ""},
	{"log_backtrace_at", ":0"},
	{"subnet-lease-ttl", (86400 * time.Second).String()},
}

// weftOnlyFlags are weftd's flags that flanneld does not have.
var weftOnlyFlags = []string{"restrict-tunnel-port"}

// TestFlagDefaultsAreFlanneld: each flag weftd shares with flanneld defaults to flanneld's
// value, and every weftd flag is either one of flanneld's or listed as weft's own (a new
// flag must be classified here).
func TestFlagDefaultsAreFlanneld(t *testing.T) {
	fs := (&options{}).flagSet()
	for _, f := range flanneldDefaults {
		got := fs.Lookup(f.name)
		if got == nil {
			t.Errorf("--%s: flanneld has it (default %q), weftd does not", f.name, f.def)
			continue
		}
		if got.DefValue != f.def {
			t.Errorf("--%s: weftd's default %q, flanneld's %q", f.name, got.DefValue, f.def)
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		known := slices.ContainsFunc(flanneldDefaults, func(d struct{ name, def string }) bool { return d.name == f.Name })
		if !known && !slices.Contains(weftOnlyFlags, f.Name) {
			t.Errorf("--%s (default %q) is neither in flanneldDefaults nor in weftOnlyFlags", f.Name, f.DefValue)
		}
	})
}

// TestDefaultDaemonConfig: with no flags and no environment, the daemon gets flanneld's
// behaviour, in the daemon's units (the flag defaults above, as the daemon reads them).
func TestDefaultDaemonConfig(t *testing.T) {
	o, warnings, err := parseFlags(nil, nil)
	if err != nil || len(warnings) != 0 {
		t.Fatalf("parseFlags(no flags, no environment) = %v, warnings %q", err, warnings)
	}
	c := o.daemonConfig("test")
	for _, check := range []struct {
		what      string
		got, want any
	}{
		{"subnet file", c.SubnetFile, "/run/flannel/subnet.env"},
		{"lease TTL (flanneld: 86400 s)", c.LeaseTTL, 86400 * time.Second},
		{"renew margin (flanneld: 60 minutes)", c.RenewMargin, 60 * time.Minute},
		{"ip-masq", c.IPMasq, false},
		{"masquerade without --random-fully", c.IPMasqNoRandomFully, false},
		{"FORWARD rules", c.ForwardRules, true},
		{"iptables resync (flanneld: 5 s)", c.IPTablesSync, 5 * time.Second},
		{"blackhole route", c.BlackholeRoute, false},
		{"health endpoint (flanneld: port 0, off)", c.HealthzAddr, ""},
		{"Kubernetes mode", c.Kube == nil, true},
		{"etcd endpoints", strings.Join(c.Etcd.Endpoints, ","), "http://127.0.0.1:4001,http://127.0.0.1:2379"},
		{"etcd prefix", c.Etcd.Prefix, "/coreos.com/network"},
	} {
		if check.got != check.want {
			t.Errorf("%s: %v, want %v", check.what, check.got, check.want)
		}
	}
}

// docFlagRow is one row of the flags table of Documentation/configuration.md: the flags of
// its first cell (without dashes) and its default cell.
type docFlagRow struct {
	flags []string
	def   string
	line  int
}

var (
	docFlagName = regexp.MustCompile("`-{1,2}([a-z0-9_-]+)`")
	docNumber   = regexp.MustCompile(`^[0-9]+$`)
)

// docFlagsTable parses the "| flag | default | meaning |" table of the "## weftd flags"
// section of Documentation/configuration.md.
func docFlagsTable(t *testing.T) []docFlagRow {
	t.Helper()
	b, err := os.ReadFile("../../Documentation/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	start := slices.Index(lines, "## weftd flags")
	if start < 0 {
		t.Fatal(`configuration.md has no "## weftd flags" section`)
	}
	var rows []docFlagRow
	inTable := false
	for i := start + 1; i < len(lines); i++ {
		line := lines[i]
		if strings.HasPrefix(line, "## ") {
			break
		}
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break // the end of the table
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		if !inTable {
			if len(cells) < 2 || cells[0] != "flag" || cells[1] != "default" {
				t.Fatalf("configuration.md:%d: the table's header is %q, want | flag | default | ...", i+1, line)
			}
			inTable = true
			continue
		}
		if strings.Trim(cells[0], "-") == "" { // the |---|---| line
			continue
		}
		if len(cells) < 3 {
			t.Fatalf("configuration.md:%d: %d cells, want flag, default, meaning: %q", i+1, len(cells), line)
		}
		var names []string
		for _, m := range docFlagName.FindAllStringSubmatch(cells[0], -1) {
			names = append(names, m[1])
		}
		if len(names) == 0 {
			t.Fatalf("configuration.md:%d: no `--flag` in the first cell %q", i+1, cells[0])
		}
		rows = append(rows, docFlagRow{flags: names, def: cells[1], line: i + 1})
	}
	if len(rows) == 0 {
		t.Fatal(`configuration.md's "## weftd flags" has no flags table`)
	}
	return rows
}

// docDefaultAgrees reports whether a default cell of the table states the code's default:
//   - `value` in backquotes: exactly that value;
//   - a number or true/false, optionally followed by a remark ("0 (off)"): that word;
//   - an empty cell: the flag has no default, i.e. its type's unset value ("", false, 0,
//     [], klog's ":0" for an unset log_backtrace_at);
//   - other prose ("the interface's address"): a default found at run time, so the code's
//     is the unset "".
func docDefaultAgrees(cell, code string) bool {
	if strings.HasPrefix(cell, "`") {
		v, rest, ok := strings.Cut(cell[1:], "`")
		return ok && strings.TrimSpace(rest) == "" && v == code
	}
	if cell == "" {
		return slices.Contains([]string{"", "false", "0", "[]", ":0"}, code)
	}
	word, _, _ := strings.Cut(cell, " ")
	if word == "true" || word == "false" || docNumber.MatchString(word) {
		return word == code
	}
	return code == ""
}

// TestConfigurationDocDefaults: every row of configuration.md's weftd flags table names
// flags weftd has and states their defaults as the code has them, and every flag weftd
// shows in its usage has a row.
func TestConfigurationDocDefaults(t *testing.T) {
	fs := (&options{}).flagSet()
	listed := map[string]bool{}
	rows := docFlagsTable(t)
	for _, r := range rows {
		for _, name := range r.flags {
			listed[name] = true
			f := fs.Lookup(name)
			if f == nil {
				t.Errorf("configuration.md:%d: --%s is in the table but weftd has no such flag", r.line, name)
				continue
			}
			if !docDefaultAgrees(r.def, f.DefValue) {
				t.Errorf("configuration.md:%d: --%s: the table's default %q, the code's %q", r.line, name, r.def, f.DefValue)
			}
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Hidden && !listed[f.Name] {
			t.Errorf("--%s (default %q) has no row in configuration.md's weftd flags table", f.Name, f.DefValue)
		}
	})
	t.Logf("%d rows, %d flags checked", len(rows), len(listed))
}

func TestDocDefaultAgrees(t *testing.T) {
	for _, c := range []struct {
		cell, code string
		want       bool
	}{
		{"`/run/flannel/subnet.env`", "/run/flannel/subnet.env", true},
		{"`/run/flannel/subnet.env`", "/run/subnet.env", false},
		{"`0.0.0.0`", "0.0.0.0", true},
		{"60", "60", true},
		{"60", "30", false},
		{"0 (off)", "0", true},
		{"0 (off)", "8080", false},
		{"false", "false", true},
		{"true", "false", false},
		{"", "", true},
		{"", "[]", true},
		{"", "false", true},
		{"", "/etc/x", false},
		{"the interface's address", "", true},
		{"the interface's address", "192.0.2.1", false},
	} {
		if got := docDefaultAgrees(c.cell, c.code); got != c.want {
			t.Errorf("docDefaultAgrees(%q, %q) = %v, want %v", c.cell, c.code, got, c.want)
		}
	}
}
