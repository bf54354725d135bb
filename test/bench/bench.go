// Package bench measures weft on one machine: the underlay's limit, then each backend pod
// to pod (TCP throughput with iperf3, round trip time with ping, and for the userspace
// backends weftd's CPU seconds per GB moved), how fast a joining node becomes reachable
// (convergence), and what one weftd does with thousands of peers (scale). cmd/weft-bench is
// its command line; Documentation/benchmarks.md says what each figure means.
//
// Everything runs in throwaway namespace clusters (test/cluster): a real etcd in the hub
// namespace, real weftd binaries in node namespaces, pods as namespaces behind a bridge.
// Every packet stays inside namespaces the run made, every process it starts is stopped by
// PID, and every wait is bounded. Each path gets a fresh cluster of the same shape, so no
// backend sees another's leftovers.
//
// It is a tool, not a test: no figure fails a run. A run fails only when a measurement
// could not be made (weftd did not start, pods never reached each other, iperf3 gave no
// result), and even then the rest is measured and reported.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/etcdtest"
	"github.com/weftnet/weft/test/nstest"
)

// Files written in the run's folder.
const (
	ResultsFile    = "results.json"
	TableFile      = "table.txt"
	LogFile        = "bench.log"
	ThroughputSVG  = "throughput.svg"
	CPUSVG         = "cpu.svg"
	ScaleSVG       = "scale.svg"
	leaseWaitLimit = 30 * time.Second // weftd start to subnet file, per fixed node
	meshWaitLimit  = 30 * time.Second // pods reaching each other before measuring
)

// runner is one run. Its fields are touched by the goroutine calling Run only, except
// where noted.
type runner struct {
	o     Options
	res   *Results
	out   io.Writer
	t0    time.Time
	weftd string // the weftd binary
	hz    int64  // clock ticks per second of /proc stat times

	logMu sync.Mutex // guards log
	log   io.Writer  // bench.log: every cluster step and command
}

// Run measures what o asks for, writes the results under <o.Out>/<timestamp>/ and prints
// progress and the final table to out. The error is for a run that could not start (not
// root, a tool missing, the folder not writable); measurements that failed are listed in
// Results.Errors, and the results written so far are still returned.
func Run(ctx context.Context, o Options, out io.Writer) (*Results, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := Available(); err != nil {
		return nil, err
	}
	r := &runner{o: o, out: out, t0: time.Now()}
	dir := filepath.Join(o.Out, r.t0.Format("20060102-150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results folder: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, LogFile))
	if err != nil {
		return nil, fmt.Errorf("results folder: %w", err)
	}
	defer logf.Close()
	r.log = logf
	r.hz, _ = clockTicks()
	r.res = &Results{Started: r.t0, Dir: dir, Command: o.Command, Errors: []string{}}

	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	r.step("results in %s", dir)
	bin, cleanup, err := r.resolveWeftd(ctx)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	r.weftd = bin
	r.res.Machine = machineFacts(ctx, bin)
	r.res.Options = recordOptions(o, bin)
	r.res.Commands = commandTemplates(o)

	r.measure(ctx)

	r.res.Finished = time.Now()
	r.res.Seconds = r.res.Finished.Sub(r.t0).Seconds()
	r.res.Machine.LoadAvgEnd = loadAvg()
	derive(r.res)
	table := FormatTable(r.res)
	if err := r.write(table); err != nil {
		r.fail("writing results: %v", err)
	}
	fmt.Fprintf(out, "\n%s", table)
	return r.res, nil
}

// measure runs the paths in rounds, then the scale test. Each round builds every path's
// cluster in turn and takes one iperf3 run per stream count from it, so the repetitions of
// all paths are interleaved in time: a machine whose speed drifts during the run (a busy
// neighbour on a shared host) shifts every path alike instead of whichever path ran while
// it was slow, and the ratios to the underlay stay fair. Latency and convergence are
// measured once per path, in the first round that brings its cluster up. A path that
// fails in a round is recorded and tried again in the next.
func (r *runner) measure(ctx context.Context) {
	underlay := &Path{Name: "underlay", Kind: "underlay", MTU: 1500}
	r.res.Paths = append(r.res.Paths, underlay)
	underlays := []*Path{underlay}
	if slices.ContainsFunc(r.o.orderedBackends(), func(s Spec) bool { return s.IPv6 }) {
		u6 := &Path{Name: "underlay-v6", Kind: "underlay", MTU: 1500, IPv6: true}
		r.res.Paths = append(r.res.Paths, u6)
		underlays = append(underlays, u6)
	}
	var backends []backendPath
	for _, spec := range r.o.orderedBackends() {
		p := &Path{Name: spec.Name, Kind: "backend", Config: spec.NetworkConfig(Network), Userspace: spec.Userspace, IPv6: spec.IPv6}
		r.res.Paths = append(r.res.Paths, p)
		if why := spec.Supported(); why != "" {
			p.Skipped = "not supported by this weft build: " + why
			r.step("%s: skipped (%s)", spec.Name, p.Skipped)
			continue
		}
		backends = append(backends, backendPath{spec, p})
	}
	for round := 1; round <= r.o.Reps; round++ {
		if r.o.Reps > 1 && ctx.Err() == nil {
			r.step("round %d of %d", round, r.o.Reps)
		}
		if !r.round(ctx, round, underlays, backends) {
			r.fail("rounds %d to %d cut short: %s", round, r.o.Reps, stopReason(ctx))
			for _, p := range r.res.Paths {
				if p.Skipped == "" && len(p.Throughput) == 0 && p.Latency == nil {
					p.Skipped = stopReason(ctx)
				}
			}
			break
		}
	}
	if r.o.Scale > 0 {
		if ctx.Err() != nil {
			r.fail("scale: skipped: %s", stopReason(ctx))
			return
		}
		r.res.Scale = r.scalePhase(ctx)
		if ctx.Err() == nil {
			r.res.KubeScale = r.kubeScalePhase(ctx)
		}
	}
}

// backendPath is a backend to measure and the Path its figures go to.
type backendPath struct {
	spec Spec
	path *Path
}

// round measures every path once, the underlays first. It reports false when ctx ended
// before the round was complete.
func (r *runner) round(ctx context.Context, round int, underlays []*Path, backends []backendPath) bool {
	for _, u := range underlays {
		if ctx.Err() != nil {
			return false
		}
		r.underlayPhase(ctx, u, round)
	}
	for _, b := range backends {
		if ctx.Err() != nil {
			return false
		}
		r.backendPhase(ctx, b.spec, b.path, round)
	}
	return ctx.Err() == nil
}

// Available reports why the bench cannot run here (not root, a tool or etcd missing).
func Available() error {
	if err := nstest.Available(); err != nil {
		return err
	}
	if err := etcdtest.Available(); err != nil {
		return err
	}
	for _, tool := range []string{"iperf3", "ping", "ss"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (Debian: iperf3, iputils-ping, iproute2): %w", tool, err)
		}
	}
	return nil
}

// resolveWeftd returns the weftd binary: Options.WeftdPath, or a fresh build of ./cmd/weftd
// into a temporary folder that cleanup removes.
func (r *runner) resolveWeftd(ctx context.Context) (string, func(), error) {
	if r.o.WeftdPath != "" {
		p, err := filepath.Abs(r.o.WeftdPath)
		if err != nil {
			return "", nil, err
		}
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", nil, fmt.Errorf("weftd binary %s: not an executable file (%v)", p, err)
		}
		return p, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "weft-bench-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = os.RemoveAll(tmp) }
	bin := filepath.Join(tmp, "weftd")
	r.step("building weftd: go build -o %s ./cmd/weftd", bin)
	if err := cluster.Build(ctx, "./cmd/weftd", bin); err != nil {
		cleanup()
		return "", nil, err
	}
	return bin, cleanup, nil
}

// startCluster builds one phase's cluster; the caller closes it.
func (r *runner) startCluster(ctx context.Context, label string, nodes int) (*cluster.Cluster, error) {
	bctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// Every cluster has the IPv6 underlay, so that the IPv4 and IPv6 rows run on the same.
	return cluster.Start(bctx, cluster.Options{Nodes: nodes, WeftdPath: r.weftd, IPv6: true}, func(f string, a ...any) {
		r.logf(label+": "+f, a...)
	})
}

// closeCluster tears a phase's cluster down, keeping the weftd logs when the phase failed.
func (r *runner) closeCluster(label string, c *cluster.Cluster, failed bool, ws []*cluster.Weftd) {
	if failed {
		r.saveLogs(label, ws)
	}
	if err := c.Close(); err != nil {
		r.fail("%s: teardown: %v", label, err)
	}
}

// saveLogs copies weftd logs into <dir>/logs/.
func (r *runner) saveLogs(label string, ws []*cluster.Weftd) {
	dir := filepath.Join(r.res.Dir, "logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	for _, w := range ws {
		if w == nil {
			continue
		}
		dst := filepath.Join(dir, fmt.Sprintf("%s-node%d-%s", label, w.Node(), filepath.Base(w.LogPath())))
		_ = os.WriteFile(dst, []byte(w.Log()), 0o644)
	}
	r.step("%s: weftd logs kept in %s", label, dir)
}

// step prints a progress line (and logs it).
func (r *runner) step(format string, a ...any) {
	line := fmt.Sprintf("[%7.1fs] %s", time.Since(r.t0).Seconds(), fmt.Sprintf(format, a...))
	fmt.Fprintln(r.out, line)
	r.logf("%s", line)
}

// logf writes a line to bench.log only. Safe for concurrent use.
func (r *runner) logf(format string, a ...any) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	if r.log != nil {
		fmt.Fprintf(r.log, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
	}
}

// fail records a run-level error.
func (r *runner) fail(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	r.res.Errors = append(r.res.Errors, msg)
	r.step("ERROR: %s", msg)
}

// pathFail records an error of one path (also in the run's list).
func (r *runner) pathFail(p *Path, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	p.Errors = append(p.Errors, msg)
	r.fail("%s: %s", p.Name, msg)
}

// write saves results.json, table.txt and the charts.
func (r *runner) write(table string) error {
	var errs []error
	if err := writeJSON(filepath.Join(r.res.Dir, ResultsFile), r.res); err != nil {
		errs = append(errs, err)
	}
	if err := os.WriteFile(filepath.Join(r.res.Dir, TableFile), []byte(table), 0o644); err != nil {
		errs = append(errs, err)
	}
	if err := WriteCharts(r.res, r.res.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// stopReason says why ctx ended, for a phase that was not run.
func stopReason(ctx context.Context) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "the run's time was up (-timeout)"
	}
	return "interrupted"
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// joinErrs renders errors as one line.
func joinErrs(errs []error) string {
	var s []string
	for _, e := range errs {
		s = append(s, e.Error())
	}
	return strings.Join(s, "; ")
}
