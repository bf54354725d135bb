package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/test/nstest"
)

// TestQuickRun runs the whole bench with the smallest settings on one kernel backend and one
// userspace backend, so that every measurement path (underlay, throughput, CPU per GB,
// latency, route and ping convergence, scale, JSON, table, charts, cleanup) keeps working.
// Two rounds check that the paths' repetitions are interleaved. It checks that each
// measurement was made, never what it measured.
func TestQuickRun(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	o := QuickDefaults()
	o.Out = t.TempDir()
	o.Backends = []string{"vxlan", "udp"}
	o.Streams = []int{1}
	o.PingCount = 10
	o.Joins = 1
	o.Reps = 2
	o.Command = "go test (TestQuickRun)"
	var out strings.Builder
	start := time.Now()
	res, err := Run(context.Background(), o, &out)
	t.Logf("quick run took %v; its output:\n%s", time.Since(start), out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 {
		t.Fatalf("measurements failed: %q", res.Errors)
	}

	for _, name := range []string{"underlay", "vxlan", "udp"} {
		p := res.path(name)
		if p == nil {
			t.Fatalf("no %s path in %+v", name, res.Paths)
		}
		tp := p.throughput(1)
		if tp == nil || tp.Gbps.Median <= 0 || tp.RatioToUnderlay <= 0 || len(tp.Runs) != 2 || tp.Runs[0].Command == "" {
			t.Errorf("%s: throughput %+v", name, tp)
		}
		if p.Latency == nil || p.Latency.RTTms.N == 0 || p.Latency.RatioToUnderlay <= 0 {
			t.Errorf("%s: latency %+v", name, p.Latency)
		}
		if name == "underlay" {
			continue
		}
		if c := p.Convergence; c == nil || c.NodesMs.N != 1 || c.PodsMs.N != 1 || c.LeaveMs.N != 1 {
			t.Errorf("%s: convergence %+v", name, c)
		}
		if wantCPU := name == "udp"; wantCPU != (tp != nil && tp.CPUPerGB != nil && tp.CPUPerGB.Median > 0) {
			t.Errorf("%s: CPU per GB %+v, want it measured: %t", name, tp, wantCPU)
		}
	}
	// Interleaved: every path's first run before any path's second.
	progress := out.String()
	lastFirst := strings.Index(progress, "udp: -P 1 run 1/2")
	firstSecond := strings.Index(progress, "underlay: -P 1 run 2/2")
	if lastFirst < 0 || firstSecond < lastFirst {
		t.Errorf("runs not interleaved: udp's run 1 at %d, the underlay's run 2 at %d", lastFirst, firstSecond)
	}
	s := res.Scale
	if s == nil || s.Routes != o.Scale || s.FDB < o.Scale || s.RoutesS < 0 || s.JoinMs < 0 || s.LeaveMs < 0 || s.RestartRoutesS < 0 || s.RSSKiB <= 0 {
		t.Errorf("scale %+v", s)
	}
	if k := res.KubeScale; k == nil || (k.Skipped == "" && (k.Routes != o.Scale || k.ProgrammedS < 0 || k.ReadyS < 0 || k.RSSKiB <= 0)) {
		t.Errorf("kube scale %+v", k)
	}
	if res.Machine.NProc == 0 || res.Machine.Iperf3Version == "" || res.Machine.ClockTicks == 0 {
		t.Errorf("machine facts %+v", res.Machine)
	}

	// The files.
	b, err := os.ReadFile(filepath.Join(res.Dir, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(b, &back); err != nil || len(back.Paths) != 3 {
		t.Errorf("results.json: %v, %d paths", err, len(back.Paths))
	}
	for _, f := range []string{TableFile, LogFile, ThroughputSVG, CPUSVG, ScaleSVG} {
		b, err := os.ReadFile(filepath.Join(res.Dir, f))
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %v (%d bytes)", f, err, len(b))
		}
		if strings.HasSuffix(f, ".svg") && !strings.Contains(string(b), "<svg") {
			t.Errorf("%s is not an SVG", f)
		}
	}
	if !strings.Contains(out.String(), "TCP throughput") {
		t.Errorf("the table was not printed")
	}

	// Nothing left behind: no namespace of this process, no child process.
	if left := ownNamespaces(); len(left) > 0 {
		t.Errorf("namespaces left: %q", left)
	}
	if kids := childProcesses(); len(kids) > 0 {
		t.Errorf("child processes left: %q", kids)
	}
}

// ownNamespaces lists this process's namespaces (nsutil names carry the PID).
func ownNamespaces() []string {
	entries, _ := os.ReadDir("/run/netns")
	mine := fmt.Sprintf("%s%d-", nstest.Prefix, os.Getpid())
	var left []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), mine) {
			left = append(left, e.Name())
		}
	}
	return left
}

// childProcesses lists live processes whose parent is this process.
func childProcesses() []string {
	entries, _ := os.ReadDir("/proc")
	var kids []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(f)
		f.Close()
		s := string(b)
		end := strings.LastIndexByte(s, ')')
		if end < 0 {
			continue
		}
		fields := strings.Fields(s[end+1:]) // state, ppid, ...
		if len(fields) > 1 && fields[1] == strconv.Itoa(os.Getpid()) && fields[0] != "Z" {
			kids = append(kids, fmt.Sprintf("%d %s", pid, s[:end+1]))
		}
	}
	return kids
}
