// Package flagenv fills command-line flags that were not given on the command line from
// environment variables, the way flanneld reads FLANNELD_<NAME>: the flag --etcd-endpoints
// is read from <PREFIX>_ETCD_ENDPOINTS (dashes become underscores, upper case), trying each
// prefix in order. weftd and weftctl use it so that one environment file configures both.
// It also names the variables that carry a prefix but match no flag, so that a typo is
// reported instead of silently ignored.
//
// It only sets flag values; it never reads files, validates values beyond the flag's own
// parser, or touches flags that were set on the command line.
package flagenv

import (
	"fmt"
	"slices"
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

// commandLineOnly is the annotation that keeps Apply away from a flag.
const commandLineOnly = "flagenv/command-line-only"

// CommandLineOnly marks flags of fs that Apply never sets from the environment (flanneld
// reads --version before its environment, so FLANNELD_VERSION does nothing there). Unknown
// names are ignored.
func CommandLineOnly(fs *pflag.FlagSet, names ...string) {
	for _, n := range names {
		_ = fs.SetAnnotation(n, commandLineOnly, []string{"true"})
	}
}

// fromEnv reports whether Apply reads f from the environment.
func fromEnv(f *pflag.Flag) bool { return f.Annotations[commandLineOnly] == nil }

// Lookup returns the first variable among Name(prefix, flag) for the prefixes, in order,
// that is set and not empty, and its value.
func Lookup(getenv func(string) string, flag string, prefixes ...string) (name, value string, ok bool) {
	for _, p := range prefixes {
		name := Name(p, flag)
		if v := getenv(name); v != "" {
			return name, v, true
		}
	}
	return "", "", false
}

// Apply sets every flag of fs that is not Changed (not given on the command line; parse the
// command line first) and not CommandLineOnly from Lookup's variable. A flag set this way is
// marked Changed. An empty variable counts as unset. getenv is os.Getenv in a program and a
// map lookup in tests.
//
// A value the flag rejects stops Apply with an error naming the value, the flag and the
// variable, e.g. `invalid value "x" for --iptables-resync (from $WEFTD_IPTABLES_RESYNC): ...`.
func Apply(fs *pflag.FlagSet, getenv func(string) string, prefixes ...string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil || !fromEnv(f) {
			return
		}
		name, v, ok := Lookup(getenv, f.Name, prefixes...)
		if !ok {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("invalid value %q for --%s (from $%s): %v", v, f.Name, name, serr)
		}
	})
	return err
}

// Unmatched returns, sorted, the names of the variables in environ (os.Environ's
// "NAME=value" form) that start with one of the prefixes and an underscore, are not empty,
// and are not what Apply reads for a flag of fs (no such flag, or a CommandLineOnly one).
func Unmatched(fs *pflag.FlagSet, environ []string, prefixes ...string) []string {
	read := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) {
		if fromEnv(f) {
			for _, p := range prefixes {
				read[Name(p, f.Name)] = true
			}
		}
	})
	var out []string
	for _, kv := range environ {
		name, v, _ := strings.Cut(kv, "=")
		if v == "" || read[name] {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(name, p+"_") {
				out = append(out, name)
				break
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
