package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestRenderMatrix(t *testing.T) {
	tests := []struct {
		name  string
		heads []string
		cells [][]cell
		want  string
		ok    bool
	}{
		{
			name:  "all ok",
			heads: []string{"node0 10.244.1.2", "node1 10.244.2.2"},
			cells: [][]cell{{cellSelf, cellOK}, {cellOK, cellSelf}},
			want: "" +
				"from \\ to         node0 10.244.1.2  node1 10.244.2.2\n" +
				"node0 10.244.1.2  -                 ok\n" +
				"node1 10.244.2.2  ok                -\n",
			ok: true,
		},
		{
			name:  "rows are sources, columns destinations",
			heads: []string{"a", "b", "c"},
			cells: [][]cell{{cellSelf, cellFail, cellOK}, {cellOK, cellSelf, cellOK}, {cellOK, cellOK, cellSelf}},
			want: "" +
				"from \\ to  a   b     c\n" +
				"a          -   FAIL  ok\n" +
				"b          ok  -     ok\n" +
				"c          ok  ok    -\n",
			ok: false,
		},
		{
			name:  "one node",
			heads: []string{"node0 10.244.1.2"},
			cells: [][]cell{{cellSelf}},
			want: "" +
				"from \\ to         node0 10.244.1.2\n" +
				"node0 10.244.1.2  -\n",
			ok: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := renderMatrix(tt.heads, tt.cells); got != tt.want {
				t.Errorf("renderMatrix:\n%s\nwant:\n%s", got, tt.want)
			}
			if got := allOK(tt.cells); got != tt.ok {
				t.Errorf("allOK = %v, want %v", got, tt.ok)
			}
		})
	}
}

func TestPingFailedAndTransferPair(t *testing.T) {
	// node1 has no pod: its cells are FAIL but untested; node0 -> node2 failed a ping.
	cells := [][]cell{
		{cellSelf, cellFail, cellFail},
		{cellFail, cellSelf, cellFail},
		{cellOK, cellFail, cellSelf},
	}
	tested := []pair{{0, 2}, {2, 0}}
	for i, want := range []bool{true, false, true} {
		if got := pingFailed(cells, tested, i); got != want {
			t.Errorf("pingFailed(node%d) = %v, want %v", i, got, want)
		}
	}
	if n := countFail(cells, tested); n != 1 {
		t.Errorf("countFail = %d, want 1", n)
	}
	if _, _, ok := transferPair(cells); ok {
		t.Error("transferPair found a pair though none pings both ways")
	}
	cells[0][2] = cellOK
	if s, d, ok := transferPair(cells); !ok || s != 0 || d != 2 {
		t.Errorf("transferPair = %d, %d, %v; want 0, 2, true", s, d, ok)
	}
}

func TestRefusal(t *testing.T) {
	tests := []struct {
		name, log, want string
	}{
		{"none", "I1122 02:18:46.237151   10994 main.go:40] \"Starting weftd\" version=\"dev\"\n", ""},
		{
			"klog err value unquoted",
			`I1122 02:18:46.237151   10994 main.go:40] "Starting weftd" version="dev"` + "\n" +
				`E1122 02:18:46.238185   10994 config.go:28] "Invalid network config {\"Network\":\"10.244.0.0/16\",\"Backend\":{\"Type\":\"bogus\"}}; waiting for a valid config" err="invalid network config: Backend.Type \"bogus\" is not a known backend (known: [host-gw])"` + "\n",
			`invalid network config: Backend.Type "bogus" is not a known backend (known: [host-gw])`,
		},
		{
			"no err value: the line without the header",
			`E1122 02:18:46.238185   10994 config.go:28] "Invalid network config x"`,
			`"Invalid network config x"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := refusal(tt.log); got != tt.want {
				t.Errorf("refusal = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFatal(t *testing.T) {
	log := `I1206 05:21:32.849147   21169 daemon.go:146] "Network config" families="dual-stack" backend="udp"` + "\n" +
		`E1206 05:21:32.853877   21169 main.go:48] "weftd failed" err="backend udp: invalid network config: the udp backend carries IPv4 only, as flanneld's: the network config sets EnableIPv6=true"` + "\n" +
		`I1206 05:21:32.853732   21170 mode.go:109] "Using iptables" logger="iptables" mode="nft"` + "\n"
	want := "backend udp: invalid network config: the udp backend carries IPv4 only, as flanneld's: the network config sets EnableIPv6=true"
	if got := fatal(log); got != want {
		t.Errorf("fatal = %q, want %q", got, want)
	}
	if got := refusal(log); got != "" {
		t.Errorf("refusal of a fatal error = %q, want none", got)
	}
	if got := fatal(`I1206 05:21:32.841581   21169 main.go:40] "Starting weftd" version="dev"`); got != "" {
		t.Errorf("fatal without an error = %q, want none", got)
	}
}

func TestSmallFormats(t *testing.T) {
	if got, want := throughput(8<<20, time.Second), "8.0 MiB/s (67 Mbit/s)"; got != want {
		t.Errorf("throughput = %q, want %q", got, want)
	}
	if got := throughput(1, 0); got != "too fast to measure" {
		t.Errorf("throughput(1, 0) = %q", got)
	}
	if got, want := secs(1234*time.Millisecond), "1.23s"; got != want {
		t.Errorf("secs = %q, want %q", got, want)
	}
	if got, want := tail("a\nb\nc\n", 2), "b\nc"; got != want {
		t.Errorf("tail = %q, want %q", got, want)
	}
	if got, want := indent("a\nb", "  "), "  a\n  b"; got != want {
		t.Errorf("indent = %q, want %q", got, want)
	}
	if got, want := otherPods(1), "the other pod"; got != want {
		t.Errorf("otherPods(1) = %q", got)
	}
	if got, want := pairList([]pair{{1, 0}, {2, 0}, {0, 1}}, 2), "node1->node0, node2->node0, and 1 more"; got != want {
		t.Errorf("pairList = %q, want %q", got, want)
	}
	pingErr := errors.New("ping 10.244.2.2 from 10.244.1.2(ns): 0/15 replies (2 wanted) in 3s: in ns: ping -n -c 2 10.244.2.2: exit status 1: PING\nmore")
	if got, want := firstLine(pingErr), "ping 10.244.2.2 from 10.244.1.2(ns): 0/15 replies (2 wanted) in 3s"; got != want {
		t.Errorf("firstLine = %q, want %q", got, want)
	}
	got := groupFailures([]nodeFailure{{0, "refused"}, {1, "exited"}, {2, "refused"}})
	if want := []string{"node0, node2: refused", "node1: exited"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("groupFailures = %q, want %q", got, want)
	}
}

func TestParseFlags(t *testing.T) {
	t.Setenv("FAMILY", "") // the defaults below are those without $FAMILY
	tests := []struct {
		args    []string
		wantErr bool
		check   func(options) bool
	}{
		{nil, false, func(o options) bool {
			return o.backend == "host-gw" && o.nodes == 3 && o.weftd == "bin/weftd" && o.timeout == 3*time.Minute && !o.keep &&
				o.family == familyIPv4
		}},
		{[]string{"-backend", "gre", "-nodes", "2", "-keep", "-timeout", "10s"}, false, func(o options) bool {
			return o.backend == "gre" && o.nodes == 2 && o.keep && o.timeout == 10*time.Second
		}},
		{[]string{"-nodes", "0"}, true, nil},
		{[]string{"-nodes", "33"}, true, nil},
		{[]string{"-backend", ""}, true, nil},
		{[]string{"-timeout", "0s"}, true, nil},
		{[]string{"extra"}, true, nil},
		{[]string{"-nope"}, true, nil},
		{[]string{"-family", "dual-stack"}, false, func(o options) bool { return o.family == familyDualStack }},
		{[]string{"-family", "ipv6", "-mode", "kube"}, false, func(o options) bool { return o.family == familyIPv6 && o.mode == "kube" }},
		{[]string{"-family", "IPv6"}, true, nil},
		{[]string{"-family", ""}, true, nil},
	}
	for _, tt := range tests {
		o, err := parseFlags(tt.args, io.Discard)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseFlags(%q): err %v, want error %v", tt.args, err, tt.wantErr)
			continue
		}
		if err == nil && !tt.check(o) {
			t.Errorf("parseFlags(%q) = %+v", tt.args, o)
		}
	}
	t.Setenv("FAMILY", "dual-stack")
	if o, err := parseFlags(nil, io.Discard); err != nil || o.family != familyDualStack {
		t.Errorf("FAMILY=dual-stack: %+v, %v", o, err)
	}
	if o, err := parseFlags([]string{"-family", "ipv6"}, io.Discard); err != nil || o.family != familyIPv6 {
		t.Errorf("FAMILY=dual-stack -family ipv6: %+v, %v (the flag wins)", o, err)
	}
	t.Setenv("FAMILY", "dual")
	if _, err := parseFlags(nil, io.Discard); err == nil || !strings.Contains(err.Error(), `$FAMILY: -family "dual"`) {
		t.Errorf("FAMILY=dual: err %v, want one naming $FAMILY and the value", err)
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}
