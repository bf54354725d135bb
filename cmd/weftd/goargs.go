package main

import (
	"strings"

	"github.com/spf13/pflag"
)

// goStyleArgs rewrites a command line written for Go's flag package, as flanneld's is, into
// pflag's. Go's flag takes -name and --name alike and has no shorthands; pflag takes only
// --name for a long flag. So every flag token (not a flag's value, not after "--") that
// starts with a single dash gets a second one: -ip-masq becomes --ip-masq, -v=2 becomes
// --v=2; an unknown -name becomes --name, so that pflag's error names it as such. -h is
// Go's help, as --help. A value is never rewritten, whatever it looks like: in
// "--iface-regex -x", -x is the regex.
func goStyleArgs(fs *pflag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			out = append(out, a) // an argument
			continue
		}
		if a[1] != '-' {
			a = "-" + a
		}
		name, _, hasValue := strings.Cut(a[2:], "=")
		if name == "h" {
			a = "--help" + strings.TrimPrefix(a, "--h")
		}
		out = append(out, a)
		if f := fs.Lookup(name); f != nil && !hasValue && f.NoOptDefVal == "" && i+1 < len(args) {
			i++
			out = append(out, args[i]) // the flag's value
		}
	}
	return out
}
