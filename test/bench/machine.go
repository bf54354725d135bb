package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/test/cluster"
)

// machineFacts gathers what makes runs comparable. Missing facts are left empty.
func machineFacts(ctx context.Context, weftd string) Machine {
	hz, src := clockTicks()
	m := Machine{
		NProc:         runtime.NumCPU(),
		GoVersion:     runtime.Version(),
		ClockTicks:    hz,
		ClockTicksSrc: src,
		LoadAvgStart:  loadAvg(),
		Started:       time.Now(),
		Iperf3Version: firstLine(toolOutput(ctx, "iperf3", "--version")),
		PingVersion:   firstLine(toolOutput(ctx, "ping", "-V")),
		EtcdVersion:   strings.ReplaceAll(strings.TrimSpace(toolOutput(ctx, "etcd", "--version")), "\n", "; "),
		WeftdVersion:  firstLine(toolOutput(ctx, weftd, "--version")),
	}
	if root, err := cluster.ModuleRoot(); err == nil {
		m.Source = firstLine(toolOutput(ctx, "git", "-C", root, "describe", "--always", "--dirty"))
		status := strings.TrimSpace(toolOutput(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=no"))
		if status != "" {
			m.SourceChanged = len(strings.Split(status, "\n"))
		}
	}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		m.Kernel = unix.ByteSliceToString(uts.Release[:]) + " " + unix.ByteSliceToString(uts.Version[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = procField(string(b), "model name")
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemTotalKiB, _ = parseStatusKiB(string(b), "MemTotal")
	}
	return m
}

// toolOutput runs a version command, bounded, and returns its combined output ("" on error).
func toolOutput(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return ""
	}
	return string(out)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(line)
}

// procField returns the value of the first "name : value" line. It is pure.
func procField(text, name string) string {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func recordOptions(o Options, weftd string) RunOptions {
	return RunOptions{
		DurationS:      o.Duration.Seconds(),
		Reps:           o.Reps,
		Streams:        o.Streams,
		PingCount:      o.PingCount,
		IdlePings:      o.IdlePings,
		PingIntervalMs: ms(o.PingInterval),
		Joins:          o.Joins,
		Scale:          o.Scale,
		Backends:       o.Backends,
		TimeoutS:       o.Timeout.Seconds(),
		Quick:          o.Quick,
		Weftd:          weftd,
	}
}

// commandTemplates are the run's command lines with placeholders.
func commandTemplates(o Options) Commands {
	return Commands{
		Iperf3Server: "ip netns exec <destination ns> iperf3 -s -1 -B <destination IP> -p 5201",
		Iperf3Client: "ip netns exec <source ns> iperf3 -c <destination IP> -p 5201 -t " +
			secondsArg(o.Duration) + " -P <streams> -J --connect-timeout 5000",
		Ping: "ip netns exec <source ns> ping -n -c " + strconv.Itoa(o.PingCount) + " -i " + secondsArg(o.PingInterval) +
			" -W 1 -w <count*interval+5s> <destination IP>",
		ProbePing:  "in-process ping: raw ICMP socket (ip4:icmp) opened inside the source namespace, echo request every 2 ms, time of the first echo reply",
		Weftd:      "ip netns exec <node ns> <weftd> --etcd-endpoints http://192.0.2.254:2379 --iface eth0 --subnet-file <dir>/subnet.env --healthz-ip 127.0.0.1 --healthz-port 10267",
		RouteWatch: "netlink RTNLGRP_IPV4_ROUTE subscription inside each node namespace (like `ip monitor route`), main table, exact destination",
		CPU:        "utime+stime of /proc/<weftd pid>/stat before and after each iperf3 client run, divided by clk_tck",
		RSS:        "VmRSS of /proc/<weftd pid>/status",
		Peers:      "weft_peers from http://127.0.0.1:10267/metrics inside the node namespace",
	}
}

// writeJSON writes v, indented, atomically enough for a results file.
func writeJSON(path string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
