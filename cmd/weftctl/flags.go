package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/weftnet/weft/pkg/etcdflags"
	"github.com/weftnet/weft/pkg/flagenv"
	"github.com/weftnet/weft/subnet/etcdv3"
)

// Output formats of -o.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// options are all flags of one invocation.
type options struct {
	etcd       etcdflags.Flags // weftd's etcd flags
	etcdConfig etcdv3.Config   // from etcd and --timeout, set by validateEtcd

	output  string
	timeout time.Duration
	verbose bool

	// per command
	force      bool   // config set, unreserve
	ipv6Subnet string // reserve: the IPv6 subnet of a dual-stack reservation
	publicIPv6 string // reserve: the node's public IPv6 address
	node       string // status
}

// etcdFlags registers weftd's etcd flags (pkg/etcdflags). They are the only flags read
// from the environment.
func etcdFlags(o *options) *pflag.FlagSet {
	fs := pflag.NewFlagSet("etcd", pflag.ContinueOnError)
	fs.SortFlags = false
	o.etcd.AddTo(fs)
	return fs
}

// globalFlags registers the flags every command accepts, before or after its name. The
// etcd flags are returned separately as well (they are shared, not copied), so that the
// environment can be applied to them alone.
func globalFlags(o *options) (all, etcd *pflag.FlagSet) {
	all = pflag.NewFlagSet("weftctl", pflag.ContinueOnError)
	all.SortFlags = false
	etcd = etcdFlags(o)
	all.AddFlagSet(etcd)
	all.StringVarP(&o.output, "output", "o", outputTable, "output format: table or json")
	all.DurationVar(&o.timeout, "timeout", 15*time.Second, "give up on etcd or weftd after this long")
	all.BoolVarP(&o.verbose, "verbose", "v", false, "log the etcd client's warnings to stderr")
	return all, etcd
}

// quiet makes a flag set report errors only through its return values.
func quiet(fs *pflag.FlagSet) *pflag.FlagSet {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// errHelp: -h, --help or the help command; the text is in invocation.help.
var errHelp = errors.New("help requested")

// invocation is a parsed command line.
type invocation struct {
	cmd  *command // nil until the command is known
	opts *options
	args []string // positional arguments after the command name
	help string   // the text to print for errHelp
}

// parse splits args into global flags, the command name (one or two words) and the
// command's own flags and arguments. Flags may come before or after the command name.
func parse(args []string, getenv func(string) string) (*invocation, error) {
	inv := &invocation{help: topHelp()}
	cmd, flagsBefore, rest, err := splitCommand(args)
	if errors.Is(err, errHelp) {
		if cmd != nil {
			inv.help = cmd.helpText()
		}
		return inv, err
	}
	if err != nil {
		return inv, err
	}
	inv.cmd = cmd

	o := &options{}
	fs, etcd := globalFlags(o)
	own := pflag.NewFlagSet(inv.cmd.name, pflag.ContinueOnError)
	if inv.cmd.flags != nil {
		inv.cmd.flags(own, o)
	}
	fs.AddFlagSet(own)
	inv.opts = o
	if err := quiet(fs).Parse(append(flagsBefore, rest...)); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			inv.help = inv.cmd.helpText()
			return inv, errHelp
		}
		return inv, usagef("%v", err)
	}
	inv.args = fs.Args()
	if err := inv.cmd.checkArgs(inv.args); err != nil {
		return inv, err
	}
	if err := o.validate(); err != nil {
		return inv, err
	}
	if inv.cmd.etcd {
		// The etcd flags come from weftd's environment too.
		if err := flagenv.Apply(etcd, getenv, flagenv.WeftdPrefixes()...); err != nil {
			return inv, &usageError{msg: err.Error()}
		}
		if err := o.validateEtcd(); err != nil {
			return inv, err
		}
	}
	return inv, nil
}

// splitCommand finds the command name among args: global flags may precede each of its
// words. It returns the command, the global flag tokens before its name (to be parsed again
// with the command's flags) and the arguments after the name. For -h, --help or the help
// command it returns errHelp and the command asked about, if any.
func splitCommand(args []string) (cmd *command, flagsBefore, rest []string, err error) {
	var words []string
	rest = args
	for {
		g, _ := globalFlags(&options{})
		g.SetInterspersed(false)
		if err := quiet(g).Parse(rest); err != nil {
			if errors.Is(err, pflag.ErrHelp) {
				return lookupPrefix(words), nil, nil, errHelp
			}
			return nil, nil, nil, usagef("%v", err)
		}
		consumed := rest[:len(rest)-g.NArg()]
		if n := len(consumed); n > 0 && consumed[n-1] == "--" {
			consumed = consumed[:n-1]
		}
		flagsBefore = append(flagsBefore, consumed...)
		rest = g.Args()
		if len(rest) == 0 {
			if len(words) == 0 {
				return nil, nil, nil, usagef("no command given")
			}
			return nil, nil, nil, usagef("%q needs a subcommand: %s", strings.Join(words, " "), strings.Join(subcommands(words), ", "))
		}
		words, rest = append(words, rest[0]), rest[1:]
		if len(words) == 1 && words[0] == "help" {
			return helpFor(rest)
		}
		if cmd := lookup(words); cmd != nil {
			return cmd, flagsBefore, rest, nil
		}
		if parent := words[:len(words)-1]; len(parent) > 0 {
			// only a command group gets here: its next word was not one of its commands
			return nil, nil, nil, usagef("unknown subcommand %q of %q (want one of: %s)", words[len(words)-1],
				strings.Join(parent, " "), strings.Join(subcommands(parent), ", "))
		}
		if len(subcommands(words)) == 0 {
			return nil, nil, nil, usagef("unknown command %q", words[0])
		}
	}
}

// helpFor answers "weftctl help [COMMAND...]".
func helpFor(words []string) (*command, []string, []string, error) {
	if len(words) == 0 {
		return nil, nil, nil, errHelp
	}
	cmd := lookupPrefix(words)
	if cmd == nil {
		return nil, nil, nil, usagef("help: unknown command %q", strings.Join(words, " "))
	}
	return cmd, nil, nil, errHelp
}

func (o *options) validate() error {
	if o.output != outputTable && o.output != outputJSON {
		return usagef("invalid value %q for --output: want table or json", o.output)
	}
	if o.timeout <= 0 {
		return usagef("invalid value %s for --timeout: must be positive", o.timeout)
	}
	return nil
}

// validateEtcd checks the etcd flags as weftd does (pkg/etcdflags) and keeps the registry
// config they describe, connecting within --timeout.
func (o *options) validateEtcd() error {
	cfg, err := o.etcd.Config()
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	cfg.DialTimeout = o.timeout
	o.etcdConfig = cfg
	return nil
}

func topHelp() string {
	var b strings.Builder
	b.WriteString("weftctl inspects and changes weft's network config and subnet leases in etcd,\n")
	b.WriteString("and shows what a running weftd reports.\n\nUsage:\n  weftctl COMMAND [ARGS] [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-28s %s\n", c.synopsis(), c.summary)
	}
	g, _ := globalFlags(&options{})
	b.WriteString("\nFlags (before or after the command):\n")
	b.WriteString(g.FlagUsages())
	b.WriteString("\nThe --etcd-* flags not given are read from WEFTD_<FLAG> or else FLANNELD_<FLAG>,\n" +
		"e.g. WEFTD_ETCD_ENDPOINTS, like weftd's.\n" +
		"Exit status: 0 success, 1 failed or refused, 2 usage error.\n")
	return b.String()
}
