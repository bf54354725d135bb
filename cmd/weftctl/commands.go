package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// command is one weftctl command.
type command struct {
	name    string   // one or two words, e.g. "config set"
	args    []string // positional argument names, all required
	summary string   // one line for the command list
	long    string   // the help text's description
	etcd    bool     // the command talks to etcd (the etcd flags and environment apply)
	flags   func(fs *pflag.FlagSet, o *options)
	run     func(ctx context.Context, c *cli, args []string) error
}

// commands is the explicit table of commands, in the order the help lists them.
func commands() []*command {
	return []*command{
		{
			name: "config get", summary: "print the network config",
			long: "Prints the network config stored at <prefix>/config, byte for byte. If weftd would reject it,\n" +
				"a warning saying why goes to stderr.",
			etcd: true, run: runConfigGet,
		},
		{
			name: "config set", args: []string{"FILE"}, summary: "validate and write the network config (- for stdin)",
			long: "Validates FILE (or stdin for -) exactly as weftd does and writes it to <prefix>/config.\n" +
				"An invalid config is refused with weftd's message. A config that existing leases would no\n" +
				"longer fit (subnet outside Network or of another length) is refused, listing them, unless\n" +
				"--force. The check and the write are one transaction: a lease created in between is seen.",
			etcd: true, run: runConfigSet,
			flags: func(fs *pflag.FlagSet, o *options) {
				fs.BoolVar(&o.force, "force", false, "write the config even if existing leases would no longer fit it")
			},
		},
		{
			name: "leases", summary: "list subnet leases, reservations and malformed keys",
			long: "Lists every key below <prefix>/subnets/: subnet, the node's public IP, backend type, time to\n" +
				"expiry, whether it is a reservation (a key without TTL), and at the end the keys that do not\n" +
				"parse, with the reason. When a lease has an IPv6 side (a dual-stack or IPv6-only network), the\n" +
				"IPv6 subnet and public IPv6 columns are shown too; \"-\" marks a family a lease does not have.",
			etcd: true, run: runLeases,
		},
		{
			name: "reserve", args: []string{"SUBNET", "PUBLIC-IP"}, summary: "reserve SUBNET for the node with PUBLIC-IP",
			long: "Writes a reservation: the lease key of SUBNET with no TTL and the value\n" +
				"{\"PublicIP\":\"PUBLIC-IP\",\"PublicIPv6\":null}. weftd on the node with that public IP takes it and\n" +
				"keeps it a reservation. Written only if the key does not exist, or if it is that node's own\n" +
				"lease, which then loses its TTL and keeps its value; a weftd running on that node keeps the\n" +
				"subnet (its next renewal finds the reservation and stops renewing). SUBNET must fit the\n" +
				"network config, and the reservation has a subnet for each family the network runs.\n" +
				"SUBNET is a CIDR (10.244.5.0/24) or a lease key (10.244.5.0-24).\n" +
				"Dual stack: SUBNET is the IPv4 subnet, PUBLIC-IP the node's IPv4 address, with\n" +
				"--ipv6-subnet and --public-ipv6 (or SUBNET the key 10.244.5.0-24&fd00:10:0:5::-64).\n" +
				"IPv6 only: SUBNET is the IPv6 subnet (fd00:10:0:5::/64, or the key\n" +
				"0.0.0.0-0&fd00:10:0:5::-64) and PUBLIC-IP the node's IPv6 address; the value is then\n" +
				"{\"PublicIP\":\"0.0.0.0\",\"PublicIPv6\":\"PUBLIC-IP\"}, as flanneld writes it.",
			etcd: true, run: runReserve,
			flags: func(fs *pflag.FlagSet, o *options) {
				fs.StringVar(&o.ipv6Subnet, "ipv6-subnet", "", "the IPv6 subnet of a dual-stack reservation, e.g. fd00:10:0:5::/64")
				fs.StringVar(&o.publicIPv6, "public-ipv6", "", "the node's public IPv6 address (needed with an IPv6 subnet)")
			},
		},
		{
			name: "unreserve", args: []string{"SUBNET"}, summary: "delete the reservation of SUBNET",
			long: "Deletes the reservation of SUBNET. An ordinary lease (a key with a TTL) is refused unless\n" +
				"--force; the node holding it then loses its lease and takes a new one.\n" +
				"SUBNET is an IPv4 or IPv6 CIDR or a lease key; a CIDR also finds the dual-stack key that\n" +
				"holds it when that is the only key holding it.",
			etcd: true, run: runUnreserve,
			flags: func(fs *pflag.FlagSet, o *options) {
				fs.BoolVar(&o.force, "force", false, "delete the key even if it is an ordinary lease, not a reservation")
			},
		},
		{
			name: "status", summary: "show what a weftd reports on its health port",
			long: "Fetches http://HOST:PORT/status and /readyz from a weftd started with --healthz-port and\n" +
				"prints its lease, backend, peers and counters, with both address families in a dual-stack\n" +
				"or IPv6-only network.",
			run: runStatus,
			flags: func(fs *pflag.FlagSet, o *options) {
				fs.StringVar(&o.node, "node", "", "HOST:PORT of the weftd health endpoint (required)")
			},
		},
		{
			name: "version", summary: "print weftctl's version",
			run: func(_ context.Context, c *cli, _ []string) error {
				if c.opts.output == outputJSON {
					return c.writeJSON(map[string]string{"version": version})
				}
				fmt.Fprintln(c.stdout, "weftctl", version)
				return nil
			},
		},
	}
}

// lookup returns the command named exactly by words, or nil.
func lookup(words []string) *command {
	name := strings.Join(words, " ")
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// lookupPrefix returns the command named by the first words that name one, or nil.
func lookupPrefix(words []string) *command {
	for n := len(words); n > 0; n-- {
		if c := lookup(words[:n]); c != nil {
			return c
		}
	}
	return nil
}

// subcommands lists the next words after words that complete a command name.
func subcommands(words []string) []string {
	prefix := strings.Join(words, " ") + " "
	var subs []string
	for _, c := range commands() {
		if rest, ok := strings.CutPrefix(c.name, prefix); ok && len(words) > 0 {
			subs = append(subs, strings.Fields(rest)[0])
		}
	}
	return subs
}

func (c *command) synopsis() string {
	s := c.name
	if len(c.args) > 0 {
		s += " " + strings.Join(c.args, " ")
	}
	if c.name == "status" {
		s += " --node HOST:PORT"
	}
	return s
}

func (c *command) checkArgs(args []string) error {
	if len(args) < len(c.args) {
		return usagef("%s needs %s (missing %s)", c.name, strings.Join(c.args, " "), strings.Join(c.args[len(args):], " "))
	}
	if len(args) > len(c.args) {
		return usagef("%s: unexpected argument %q", c.name, args[len(c.args)])
	}
	return nil
}

func (c *command) helpText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: weftctl %s [flags]\n\n", c.synopsis())
	if c.long != "" {
		b.WriteString(c.long + "\n")
	} else {
		b.WriteString(strings.ToUpper(c.summary[:1]) + c.summary[1:] + ".\n")
	}
	if c.flags != nil {
		fs := pflag.NewFlagSet(c.name, pflag.ContinueOnError)
		c.flags(fs, &options{})
		b.WriteString("\nFlags:\n" + fs.FlagUsages())
	}
	g, _ := globalFlags(&options{})
	b.WriteString("\nGlobal flags:\n" + g.FlagUsages())
	return b.String()
}
