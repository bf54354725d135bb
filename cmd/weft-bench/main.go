// Command weft-bench measures weft on this machine, in network namespaces it makes and
// removes: the underlay's limit, each backend's pod-to-pod TCP throughput, round trip time
// and (userspace backends) weftd CPU per GB, how fast joining nodes converge, and one
// weftd with thousands of peers. It prints a table and writes results.json, table.txt and
// SVG charts under -out/<timestamp>/. `make bench` runs it; Documentation/benchmarks.md
// explains the figures.
//
// It needs root. Everything it starts is stopped, and every namespace it made deleted, on
// success, failure, -timeout or Ctrl-C. Its exit status is 0 when every measurement could
// be made, whatever the numbers; 1 when some could not (they are listed); 2 for bad usage.
//
// Wiring only: flags, the root check and signals. test/bench does the work.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/weftnet/weft/test/bench"
)

func main() { os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr)) }

func realMain(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "weft-bench: %v\n", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "weft-bench: must run as root: it creates network namespaces, veths and bridges "+
			"(all inside namespaces of its own, nothing in the host's network namespace). Try: sudo make bench")
		return 2
	}
	o.Command = "weft-bench " + strings.Join(args, " ")
	// Signals stay caught until cleanup is over: a second Ctrl-C does not cut it short.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, o, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "weft-bench: %v\n", err)
		return 1
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "weft-bench: interrupted; partial results in", res.Dir)
		return 1
	}
	if len(res.Errors) > 0 {
		fmt.Fprintf(stderr, "weft-bench: %d measurement(s) could not be made (see above and %s)\n", len(res.Errors), res.Dir)
		return 1
	}
	return 0
}

// parseFlags reads the command line. -quick changes the defaults of every flag not given.
func parseFlags(args []string, errOut io.Writer) (bench.Options, error) {
	d := bench.Defaults()
	fs := flag.NewFlagSet("weft-bench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	var (
		o        bench.Options
		streams  = intList(d.Streams)
		backends = strings.Join(d.Backends, ",")
	)
	fs.StringVar(&o.Out, "out", d.Out, "results folder; each run writes <out>/<timestamp>/")
	fs.DurationVar(&o.Duration, "duration", d.Duration, "length of one iperf3 run (whole seconds)")
	fs.IntVar(&o.Reps, "reps", d.Reps, "iperf3 runs per path and stream count")
	fs.Var(&streams, "streams", "parallel TCP stream counts, comma-separated (iperf3 -P)")
	fs.IntVar(&o.PingCount, "ping-count", d.PingCount, "latency samples per path")
	fs.IntVar(&o.IdlePings, "idle-pings", d.IdlePings, "idle-path latency samples per path, one every 200 ms (0 skips them)")
	fs.DurationVar(&o.PingInterval, "ping-interval", d.PingInterval, "interval between latency samples")
	fs.IntVar(&o.Joins, "joins", d.Joins, "node joins timed per backend (0: no convergence test)")
	fs.IntVar(&o.Scale, "scale", d.Scale, "fake peers in the scale test (0: no scale test)")
	fs.StringVar(&backends, "backends", backends, "backends to measure, comma-separated: "+strings.Join(bench.BackendNames(), ","))
	fs.StringVar(&o.WeftdPath, "weftd", "", "weftd binary (default: go build ./cmd/weftd into a temporary folder)")
	fs.DurationVar(&o.Timeout, "timeout", d.Timeout, "bound on the whole run")
	fs.DurationVar(&o.JoinTimeout, "join-timeout", d.JoinTimeout, "bound on each wait of one join")
	fs.DurationVar(&o.ScaleTimeout, "scale-timeout", d.ScaleTimeout, "bound on one wait for weftd to program every scale peer")
	fs.BoolVar(&o.Quick, "quick", false, "smoke-test settings: 1s runs, 1 rep, 20 pings, 2 joins, 20 scale peers (flags given still win)")
	fs.Usage = func() {
		fmt.Fprintf(errOut, "usage: weft-bench [flags]  (as root)\n\n"+
			"Measures the underlay and each weft backend in network namespaces: TCP throughput, round trip\n"+
			"time, weftd CPU per GB, convergence of joining nodes and one weftd with many peers.\n"+
			"See Documentation/benchmarks.md.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.Streams = streams
	o.Backends = splitList(backends)
	if o.Quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		q := bench.QuickDefaults()
		for name, apply := range map[string]func(){
			"duration":      func() { o.Duration = q.Duration },
			"reps":          func() { o.Reps = q.Reps },
			"ping-count":    func() { o.PingCount = q.PingCount },
			"idle-pings":    func() { o.IdlePings = q.IdlePings },
			"joins":         func() { o.Joins = q.Joins },
			"scale":         func() { o.Scale = q.Scale },
			"timeout":       func() { o.Timeout = q.Timeout },
			"join-timeout":  func() { o.JoinTimeout = q.JoinTimeout },
			"scale-timeout": func() { o.ScaleTimeout = q.ScaleTimeout },
		} {
			if !set[name] {
				apply()
			}
		}
	}
	if err := o.Validate(); err != nil {
		return o, err
	}
	return o, nil
}

// intList is a comma-separated list of positive integers.
type intList []int

func (l *intList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	var out intList
	for _, f := range splitList(v) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return errors.New("empty list")
	}
	*l = out
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
