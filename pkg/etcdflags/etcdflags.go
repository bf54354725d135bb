// Package etcdflags declares the etcd flags of weftd and weftctl (flanneld's --etcd-* names
// and defaults) on a pflag.FlagSet and turns their values into an etcdv3.Config, checking
// them first with errors that name the flag and the bad value. It is the one place these
// flags, their defaults and their checks are written.
//
// It declares and checks; it does not read the environment (pkg/flagenv does that, on the
// same flag set) and it does not connect to etcd.
package etcdflags

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/weftnet/weft/subnet/etcdv3"
)

// DefaultEndpoints is the default of --etcd-endpoints: flanneld's, the legacy client port
// 4001 first, then 2379.
const DefaultEndpoints = "http://127.0.0.1:4001,http://127.0.0.1:2379"

// Flags holds the values of the etcd flags once parsed.
type Flags struct {
	Endpoints string // --etcd-endpoints: comma-separated URLs or host:port
	Prefix    string // --etcd-prefix
	KeyFile   string // --etcd-keyfile
	CertFile  string // --etcd-certfile
	CAFile    string // --etcd-cafile
	Username  string // --etcd-username
	Password  string // --etcd-password
}

// AddTo declares the etcd flags on fs, bound to f, in the order the help lists them.
func (f *Flags) AddTo(fs *pflag.FlagSet) {
	fs.StringVar(&f.Endpoints, "etcd-endpoints", DefaultEndpoints, "comma-separated etcd endpoints: http:// or https:// URLs, or host:port (plain, or TLS when TLS files are given)")
	fs.StringVar(&f.Prefix, "etcd-prefix", etcdv3.DefaultPrefix, "etcd key prefix of the network config and leases")
	fs.StringVar(&f.KeyFile, "etcd-keyfile", "", "TLS client key file for etcd")
	fs.StringVar(&f.CertFile, "etcd-certfile", "", "TLS client certificate file for etcd")
	fs.StringVar(&f.CAFile, "etcd-cafile", "", "TLS CA file to verify etcd's certificate")
	fs.StringVar(&f.Username, "etcd-username", "", "etcd username")
	fs.StringVar(&f.Password, "etcd-password", "", "etcd password")
}

// Config checks the values and returns the registry config they describe (DialTimeout is
// left to the caller). Each endpoint is an http://, https://, unix:// or unixs:// URL, or a
// host:port without a scheme, which is passed on unchanged: the etcd client, as flanneld's
// does, dials it in plain text, or with TLS when TLS files are given. Each TLS file given must
// be readable; the key and the certificate go together. Errors name the flag and the value,
// e.g. `invalid value "etcd" for --etcd-endpoints: "etcd" is neither a URL nor host:port`.
func (f *Flags) Config() (etcdv3.Config, error) {
	var eps []string
	for _, ep := range strings.Split(f.Endpoints, ",") {
		ep = strings.TrimSpace(ep)
		if why := checkEndpoint(ep); why != "" {
			return etcdv3.Config{}, fmt.Errorf("invalid value %q for --etcd-endpoints: %s", f.Endpoints, why)
		}
		eps = append(eps, ep)
	}
	for _, file := range []struct{ flag, path string }{
		{"--etcd-keyfile", f.KeyFile}, {"--etcd-certfile", f.CertFile}, {"--etcd-cafile", f.CAFile},
	} {
		if file.path == "" {
			continue
		}
		fh, err := os.Open(file.path)
		if err != nil {
			return etcdv3.Config{}, fmt.Errorf("%s %s: %v", file.flag, file.path, err)
		}
		fh.Close()
	}
	if (f.KeyFile == "") != (f.CertFile == "") {
		return etcdv3.Config{}, fmt.Errorf("--etcd-keyfile and --etcd-certfile go together (got keyfile %q, certfile %q)", f.KeyFile, f.CertFile)
	}
	return etcdv3.Config{
		Endpoints: eps, Prefix: f.Prefix,
		KeyFile: f.KeyFile, CertFile: f.CertFile, CAFile: f.CAFile,
		Username: f.Username, Password: f.Password,
	}, nil
}

// checkEndpoint says what is wrong with one endpoint, or "" when the etcd client can dial it.
func checkEndpoint(ep string) string {
	if ep == "" {
		return "an endpoint is empty"
	}
	scheme, rest, ok := strings.Cut(ep, "://")
	if !ok {
		if _, _, err := net.SplitHostPort(ep); err != nil {
			return fmt.Sprintf("%q is neither a URL nor host:port", ep)
		}
		return ""
	}
	switch scheme {
	case "http", "https", "unix", "unixs":
		if rest == "" {
			return fmt.Sprintf("%q names no host", ep)
		}
		return ""
	}
	return fmt.Sprintf("%q: the etcd client dials http://, https://, unix:// and unixs:// URLs, or host:port", ep)
}
