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
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/weftnet/weft/subnet/etcdv3"
)

// DefaultEndpoints is the default of --etcd-endpoints.
const DefaultEndpoints = "http://127.0.0.1:2379"

// Flags holds the values of the etcd flags once parsed.
type Flags struct {
	Endpoints string // --etcd-endpoints: comma-separated http:// or https:// URLs
	Prefix    string // --etcd-prefix
	KeyFile   string // --etcd-keyfile
	CertFile  string // --etcd-certfile
	CAFile    string // --etcd-cafile
	Username  string // --etcd-username
	Password  string // --etcd-password
}

// AddTo declares the etcd flags on fs, bound to f, in the order the help lists them.
func (f *Flags) AddTo(fs *pflag.FlagSet) {
	fs.StringVar(&f.Endpoints, "etcd-endpoints", DefaultEndpoints, "comma-separated etcd endpoints")
	fs.StringVar(&f.Prefix, "etcd-prefix", etcdv3.DefaultPrefix, "etcd key prefix of the network config and leases")
	fs.StringVar(&f.KeyFile, "etcd-keyfile", "", "TLS client key file for etcd")
	fs.StringVar(&f.CertFile, "etcd-certfile", "", "TLS client certificate file for etcd")
	fs.StringVar(&f.CAFile, "etcd-cafile", "", "TLS CA file to verify etcd's certificate")
	fs.StringVar(&f.Username, "etcd-username", "", "etcd username")
	fs.StringVar(&f.Password, "etcd-password", "", "etcd password")
}

// Config checks the values and returns the registry config they describe (DialTimeout is
// left to the caller). Each endpoint must be an http:// or https:// URL; each TLS file given
// must be readable; the key and the certificate go together. Errors name the flag and the
// value, e.g. `invalid value "etcd:2379" for --etcd-endpoints: "etcd:2379" is not an http://
// or https:// URL`.
func (f *Flags) Config() (etcdv3.Config, error) {
	var eps []string
	for _, ep := range strings.Split(f.Endpoints, ",") {
		ep = strings.TrimSpace(ep)
		if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
			what := fmt.Sprintf("%q is not an http:// or https:// URL", ep)
			if ep == "" {
				what = "an endpoint is empty"
			}
			return etcdv3.Config{}, fmt.Errorf("invalid value %q for --etcd-endpoints: %s (each endpoint must be an http:// or https:// URL)", f.Endpoints, what)
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
