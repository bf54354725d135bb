// Command weft-demo runs a small weft cluster in network namespaces and shows it working: it
// builds an underlay, starts etcd and one real weftd per node, gives every node a pod, and
// ends with a pod-to-pod connectivity matrix, a TCP transfer and per-node timings. -family
// (or $FAMILY) runs the network IPv4 (the default), dual-stack or IPv6-only, on an underlay
// that also carries IPv6; the matrix and the transfer are shown for each family the network
// runs. -mode kube (or $MODE) does the same in Kubernetes mode against a real kube-apiserver.
//
// Everything it makes lives in namespaces it creates (see test/cluster) and is removed when it
// ends, on success, failure, timeout or Ctrl-C. It needs root. `make demo` runs it.
//
// Wiring only: flags, the root check and signals are here. The steps are in demo.go (build,
// leases, pods, cleanup), kube.go (the API server and Nodes) and probe.go (pings, matrix,
// transfer); report.go and family.go hold the pure formatting and the families' config,
// tested in report_test.go and family_test.go.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() { os.Exit(realMain(os.Args[1:])) }

func realMain(args []string) int {
	opts, err := parseFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "weft-demo: %v\n", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "weft-demo: must run as root: it creates network namespaces, veths and "+
			"bridges (all inside namespaces of its own, nothing in the host's network namespace). "+
			"Try: sudo make demo")
		return 2
	}
	// Signals stay caught until cleanup is over: a second Ctrl-C does not cut it short.
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(sigCtx, opts, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "weft-demo: %v\n", err)
		return 1
	}
	if !ok {
		return 1
	}
	return 0
}

func parseFlags(args []string, errOut io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("weft-demo", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.StringVar(&o.backend, "backend", "host-gw", "backend type written to the network config (host-gw, vxlan, udp, gre, wireguard)")
	fs.IntVar(&o.nodes, "nodes", 3, "number of nodes")
	fs.StringVar(&o.weftd, "weftd", "bin/weftd", "weftd binary (built with go build if missing)")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "bound on the whole run (not on -keep's wait)")
	fs.BoolVar(&o.keep, "keep", false, "leave the cluster running until Ctrl-C")
	mode := os.Getenv("MODE") // `make demo MODE=kube`
	if mode == "" {
		mode = "etcd"
	}
	fs.StringVar(&o.mode, "mode", mode, "etcd, or kube: weftd --kube-subnet-mgr against a real kube-apiserver (default: $MODE, else etcd)")
	fam := os.Getenv("FAMILY") // `make demo FAMILY=dual-stack`
	if fam == "" {
		fam = string(familyIPv4)
	}
	var famFlag string
	fs.StringVar(&famFlag, "family", fam, "the network's address families: ipv4, dual-stack or ipv6 (default: $FAMILY, else ipv4)")
	fs.Usage = func() {
		fmt.Fprintf(errOut, "usage: weft-demo [flags]  (as root)\n\n"+
			"Runs weftd on -nodes node namespaces with -backend, one pod per node, and reports\n"+
			"pod-to-pod connectivity, a TCP transfer and timings, over each address family of\n"+
			"-family. Exit status 0 when every pod reaches every other pod over every family.\n\n")
		fs.PrintDefaults()
	}
	err := fs.Parse(args)
	if err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.backend == "" {
		return o, errors.New("-backend must not be empty")
	}
	if o.nodes < 1 || o.nodes > maxNodes {
		return o, fmt.Errorf("-nodes %d: want 1 to %d", o.nodes, maxNodes)
	}
	if o.mode != "etcd" && o.mode != "kube" {
		return o, fmt.Errorf("-mode %q: want etcd or kube", o.mode)
	}
	if o.family, err = parseFamily(famFlag); err != nil {
		set := false
		fs.Visit(func(f *flag.Flag) { set = set || f.Name == "family" })
		if !set {
			err = fmt.Errorf("$FAMILY: %w", err)
		}
		return o, err
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("-timeout %v: want a positive duration", o.timeout)
	}
	return o, nil
}
