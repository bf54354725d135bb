// Command weftctl is weft's operator tool: it reads and writes the network config in etcd
// (validated exactly as weftd validates it), lists the subnet leases, reserves and
// unreserves subnets for nodes, and shows what a running weftd reports on its health port.
//
// It reaches etcd with weftd's --etcd-* flags, which it also reads from the same
// WEFTD_<FLAG> / FLANNELD_<FLAG> environment, so that on a node it needs no flags at all.
// It talks to etcd only through the subnet.Registry contract (subnet/etcdv3 implements it
// and spells the key layout) and never changes a lease it was not asked to. Output is a table for people by default and JSON with -o json.
//
// Exit status: 0 on success, 1 when an operation fails or is refused, 2 for a usage error
// (unknown command or flag, missing argument, a value that does not parse).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run is the whole command, in-process: it parses args, runs one command, writes to stdout
// and stderr, and returns the exit status. getenv supplies the WEFTD_/FLANNELD_ environment.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	inv, err := parse(args, getenv)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, inv.help)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "weftctl: %v\n", err)
		usageHint(stderr, inv.cmd)
		return 2
	}
	c := &cli{
		opts:   inv.opts,
		stdin:  stdin,
		stdout: stdout,
		stderr: stderr,
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(ctx, inv.opts.timeout)
	defer cancel()
	if err := inv.cmd.run(ctx, c, inv.args); err != nil {
		fmt.Fprintf(stderr, "weftctl: %v\n", err)
		var ue *usageError
		if errors.As(err, &ue) {
			usageHint(stderr, inv.cmd)
			return 2
		}
		return 1
	}
	return 0
}

// usageHint says where the usage is, after a usage error.
func usageHint(w io.Writer, cmd *command) {
	if cmd != nil {
		fmt.Fprintf(w, "Run 'weftctl %s --help' for usage.\n", cmd.name)
		return
	}
	fmt.Fprintln(w, "Run 'weftctl --help' for usage.")
}

// usageError is an error in what the user typed; run exits 2 for it.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}
