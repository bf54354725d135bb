// Command weftd is weft's per-node daemon: it leases a subnet from etcd, keeps it, watches
// the other nodes' leases and programs the configured backend. Wiring only: the work is in
// daemon/.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/daemon"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	opts, warnings, err := parseFlags(args, os.Environ())
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "weftd: %v\n", err)
		return 2
	}
	if opts.version {
		fmt.Println("weftd", version)
		return 0
	}
	defer klog.Flush()
	log := klog.Background()
	log.Info("Starting weftd", "version", version)
	for _, w := range warnings {
		log.Info("WARNING: " + w)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.New(opts.daemonConfig(version), log).Run(ctx); err != nil {
		log.Error(err, "weftd failed")
		return 1
	}
	log.Info("weftd stopped; the lease and the kernel data plane stay in place (udp's flannel0 goes with the process)")
	return 0
}
