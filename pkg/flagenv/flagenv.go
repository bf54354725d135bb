// Package flagenv fills command-line flags that were not given on the command line from
// environment variables, the way flanneld reads FLANNELD_<NAME>: the flag --etcd-endpoints
// is read from <PREFIX>_ETCD_ENDPOINTS (dashes become underscores, upper case), trying each
// prefix in order. weftd and weftctl use it so that one environment file configures both.
//
// It only sets flag values; it never reads files, validates values beyond the flag's own
// parser, or touches flags that were set on the command line.
package flagenv

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// Name returns the environment variable read for a flag with one prefix:
// Name("FLANNELD", "etcd-endpoints") is "FLANNELD_ETCD_ENDPOINTS".
func Name(prefix, flag string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// WeftdPrefixes are the environment prefixes of weftd's flags, in the order Apply tries
// them: WEFTD_<FLAG>, then flanneld's FLANNELD_<FLAG>. weftctl reads its etcd flags from
// the same variables.
func WeftdPrefixes() []string { return []string{"WEFTD", "FLANNELD"} }

// Apply sets every flag of fs that is not Changed (not given on the command line; parse the
// command line first) from the first non-empty variable among Name(prefix, flag) for the
// prefixes, in order. A flag set this way is marked Changed. An empty variable counts as
// unset. getenv is os.Getenv in a program and a map lookup in tests.
//
// A value the flag rejects stops Apply with an error naming the value, the flag and the
// variable, e.g. `invalid value "x" for --iptables-resync (from $WEFTD_IPTABLES_RESYNC): ...`.
func Apply(fs *pflag.FlagSet, getenv func(string) string, prefixes ...string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		for _, p := range prefixes {
			name := Name(p, f.Name)
			v := getenv(name)
			if v == "" {
				continue
			}
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("invalid value %q for --%s (from $%s): %v", v, f.Name, name, serr)
			}
			return
		}
	})
	return err
}
