package bench

import (
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func summary(xs ...float64) Summary { return Summarize(xs) }

// sampleResults is a made-up run with every section filled in.
func sampleResults(dir string) *Results {
	tput := func(streams int, gbps []float64, cpu []float64) *Throughput {
		tp := &Throughput{Streams: streams}
		for i, g := range gbps {
			run := &IperfRun{Gbps: g, BytesRecv: int64(g * 1e9 / 8 * 10), Seconds: 10}
			if cpu != nil {
				run.WeftdCPU = &CPU{PerGB: cpu[i]}
			}
			tp.Runs = append(tp.Runs, run)
		}
		tp.summarize()
		return tp
	}
	lat := func(p50 float64) *Latency {
		return &Latency{Sent: 100, Received: 100, RTTms: summary(p50, p50, p50*2)}
	}
	res := &Results{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Seconds: 600, Dir: dir,
		Options: RunOptions{DurationS: 10, Reps: 3, Streams: []int{1, 4}, PingCount: 100, PingIntervalMs: 10, Joins: 3},
		Machine: Machine{NProc: 2, Kernel: "6.1.0 #1 SMP", GoVersion: "go1.26", Iperf3Version: "iperf 3.12"},
		Paths: []*Path{
			{Name: "underlay", Kind: "underlay", MTU: 1500, Latency: lat(0.010),
				Throughput: []*Throughput{tput(1, []float64{40, 50, 45}, nil), tput(4, []float64{60, 62, 61}, nil)}},
			{Name: "vxlan", Kind: "backend", MTU: 1450, Latency: lat(0.020),
				Throughput:  []*Throughput{tput(1, []float64{20, 25, 22.5}, nil), tput(4, []float64{30, 31, 29}, nil)},
				Convergence: &Convergence{NodesMs: summary(1, 2, 3), PodsMs: summary(60, 61, 62), PodsAfterPodMs: summary(1, 1, 1), LeaveMs: summary(1, 1, 2), LeaseMs: summary(8, 9, 10)}},
			{Name: "udp", Kind: "backend", MTU: 1472, Userspace: true, Latency: lat(0.1),
				Throughput: []*Throughput{tput(1, []float64{3, 3, 3}, []float64{4, 4, 4}), tput(4, []float64{4, 4, 4}, []float64{3, 3, 3})}},
			{Name: "udp-nobatch", Kind: "backend", MTU: 1472, Userspace: true, Latency: lat(0.1),
				Throughput: []*Throughput{tput(1, []float64{1.5, 1.5, 1.5}, []float64{8, 8, 8}), tput(4, []float64{2, 2, 2}, []float64{6, 6, 6})}},
			{Name: "gre", Kind: "backend", Userspace: true, Skipped: "not supported by this weft build: unknown backend"},
		},
		Scale: &Scale{Peers: 2000, Backend: "vxlan", Network: ScaleNetwork, WriteS: 1.5, PeersKnownS: 10, RoutesS: 12,
			RoutesAfterLast: 10.5, RSSIdleKiB: 20480, RSSKiB: 40960, RestartRSSKiB: 40000, JoinMs: 3, LeaveMs: -1,
			RestartRoutesS: 11, RestartPeersS: 10, Routes: 2000, Neighbours: 2000, FDB: 2000,
			Progress: []ScaleSample{{0, 0, 0}, {5, 1000, 900}, {12, 2000, 2000}}},
		Errors: []string{"scale: join/leave at size: route not deleted"},
	}
	derive(res)
	return res
}

func TestDerive(t *testing.T) {
	res := sampleResults("")
	vx := res.path("vxlan")
	if got := vx.throughput(1).RatioToUnderlay; got != 0.5 {
		t.Errorf("vxlan 1-stream ratio %v, want 22.5/45 = 0.5", got)
	}
	if got := vx.Latency.RatioToUnderlay; got != 2 {
		t.Errorf("vxlan latency ratio %v, want 2", got)
	}
	if got := res.path("underlay").throughput(4).RatioToUnderlay; got != 1 {
		t.Errorf("underlay ratio %v", got)
	}
	want := []BatchRatioAt{{Streams: 1, Throughput: 2, CPUPerGB: 0.5}, {Streams: 4, Throughput: 2, CPUPerGB: 0.5}}
	if res.BatchRatio == nil || len(res.BatchRatio.Streams) != 2 || res.BatchRatio.Streams[0] != want[0] || res.BatchRatio.Streams[1] != want[1] {
		t.Errorf("batch ratio %+v, want %+v", res.BatchRatio, want)
	}
	if res.path("gre") != nil {
		t.Error("a skipped path is not a measured path")
	}
}

func TestFormatTable(t *testing.T) {
	table := FormatTable(sampleResults("results/x"))
	for _, want := range []string{
		"underlay      1500  45.00 [40.00-50.00] x1.00",
		"vxlan         1450  22.50 [20.00-25.00] x0.50",
		"gre              -  skipped: not supported",
		"udp           4.00 [4.00-4.00]",
		"1 stream(s): throughput x2.00, CPU per GB x0.50",
		"vxlan           0.020    0.040    0.020    0.040   100/100    2.00",
		"vxlan            3        2.0 / 3.0      61.0 / 62.0        1.0 / 1.0",
		"every route after 12.00 s (10.50 s after the last write)",
		"one more join 3.0 ms, one leave (not measured)",
		"RSS 20.0 MiB idle, 40.0 MiB with 2000 peers",
		"ERRORS",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

func TestWriteCharts(t *testing.T) {
	dir := t.TempDir()
	if err := WriteCharts(sampleResults(dir), dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{ThroughputSVG, CPUSVG, ScaleSVG} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !strings.Contains(string(b), "<svg") {
			t.Errorf("%s: %v", f, err)
		}
	}
	// No userspace path, no scale: only the throughput chart.
	res := sampleResults(dir)
	res.Paths, res.Scale = res.Paths[:2], nil
	dir2 := t.TempDir()
	if err := WriteCharts(res, dir2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir2, CPUSVG)); err == nil {
		t.Error("cpu chart without a userspace path")
	}
}

func TestResultsJSONRoundTrip(t *testing.T) {
	res := sampleResults("d")
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"gbps":{"n":3`, `"ratio_to_underlay":0.5`, `"udp_batch_vs_nobatch"`, `"routes_programmed_s":12`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

func TestFakeLeases(t *testing.T) {
	network := netip.MustParsePrefix(ScaleNetwork)
	own := netip.MustParsePrefix("10.128.3.0/24")
	leases, err := fakeLeases(network, own, 600)
	if err != nil {
		t.Fatal(err)
	}
	seenSubnet, seenIP := map[netip.Prefix]bool{}, map[netip.Addr]bool{}
	pubs := netip.MustParsePrefix(fakePublicIPs)
	for _, l := range leases {
		if l.Subnet == own || !network.Contains(l.Subnet.Addr()) || l.Subnet.Bits() != 24 || seenSubnet[l.Subnet] {
			t.Fatalf("bad subnet %s", l.Subnet)
		}
		b := l.Attrs.PublicIP.As4()
		if !pubs.Contains(l.Attrs.PublicIP) || seenIP[l.Attrs.PublicIP] || b[3] == 0 || b[3] == 255 {
			t.Fatalf("bad PublicIP %s", l.Attrs.PublicIP)
		}
		seenSubnet[l.Subnet], seenIP[l.Attrs.PublicIP] = true, true
	}
	if leases[0].Subnet.String() != "10.128.1.0/24" || leases[2].Subnet.String() != "10.128.4.0/24" {
		t.Errorf("order: %s %s", leases[0].Subnet, leases[2].Subnet)
	}
	v, err := json.Marshal(leases[0].Attrs)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:fe:00:00:00:01"}}`; string(v) != want {
		t.Errorf("lease value %s, want %s", v, want)
	}
	if _, err := fakeLeases(netip.MustParsePrefix("10.0.0.0/22"), own, 10); err == nil {
		t.Error("a /22 has no 10 free /24s")
	}
}

func TestEchoRequest(t *testing.T) {
	b := echoRequest(0x1234, 7)
	if b[0] != 8 || binary.BigEndian.Uint16(b[4:]) != 0x1234 || binary.BigEndian.Uint16(b[6:]) != 7 {
		t.Fatalf("echo request % x", b)
	}
	if icmpChecksum(b) != 0 {
		t.Errorf("checksum does not verify: % x", b)
	}
	reply := append([]byte(nil), b...)
	reply[0] = 0
	if !isEchoReply(reply, 0x1234) || isEchoReply(reply, 0x1235) || isEchoReply(b, 0x1234) || isEchoReply(reply[:4], 0x1234) {
		t.Error("isEchoReply")
	}
}

func TestGaugeValue(t *testing.T) {
	text := "# HELP weft_peers Peers\n# TYPE weft_peers gauge\nweft_peers 2000\nweft_peers_other 1\n"
	if v, ok := gaugeValue(text, "weft_peers"); !ok || v != 2000 {
		t.Errorf("weft_peers = %v %t", v, ok)
	}
	if _, ok := gaugeValue(text, "weft_lease_held"); ok {
		t.Error("found a missing gauge")
	}
}

func TestOptions(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if err := QuickDefaults().Validate(); err != nil {
		t.Errorf("quick defaults: %v", err)
	}
	for name, mod := range map[string]func(*Options){
		"fractional duration": func(o *Options) { o.Duration = 1500 * time.Millisecond },
		"no reps":             func(o *Options) { o.Reps = 0 },
		"unknown backend":     func(o *Options) { o.Backends = []string{"carrier-pigeon"} },
		"backend twice":       func(o *Options) { o.Backends = []string{"udp", "udp"} },
		"too many joins":      func(o *Options) { o.Joins = 251 },
		"scale too big":       func(o *Options) { o.Scale = MaxScale + 1 },
		"zero streams":        func(o *Options) { o.Streams = []int{0} },
		"stream count twice":  func(o *Options) { o.Streams = []int{1, 4, 1} },
	} {
		o := Defaults()
		mod(&o)
		if err := o.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, s := range specs() {
		if s.Name != "gre" && s.Supported() != "" {
			t.Errorf("%s: %s", s.Name, s.Supported())
		}
	}
	if got := specs()[3].NetworkConfig(Network); got != `{"Network":"10.244.0.0/16","Backend":{"Type":"udp","Batch":false}}` {
		t.Errorf("udp-nobatch config %s", got)
	}
}
