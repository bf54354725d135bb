package etcdflags

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/weftnet/weft/pkg/flagenv"
	"github.com/weftnet/weft/subnet/etcdv3"
)

func parse(t *testing.T, args []string, env map[string]string) (*Flags, error) {
	t.Helper()
	f := &Flags{}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	f.AddTo(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := flagenv.Apply(fs, func(k string) string { return env[k] }, flagenv.WeftdPrefixes()...); err != nil {
		return nil, err
	}
	return f, nil
}

// TestNamesAndDefaults: flanneld's flag names, weftd's defaults.
func TestNamesAndDefaults(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	(&Flags{}).AddTo(fs)
	want := map[string]string{
		"etcd-endpoints": "http://127.0.0.1:4001,http://127.0.0.1:2379", "etcd-prefix": "/coreos.com/network",
		"etcd-keyfile": "", "etcd-certfile": "", "etcd-cafile": "", "etcd-username": "", "etcd-password": "",
	}
	got := map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) { got[f.Name] = f.DefValue })
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flags %v, want %v", got, want)
	}
	f, err := parse(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := f.Config()
	if err != nil || !reflect.DeepEqual(cfg, etcdv3.Config{Endpoints: []string{"http://127.0.0.1:4001", "http://127.0.0.1:2379"}, Prefix: "/coreos.com/network"}) {
		t.Errorf("default config %+v, %v", cfg, err)
	}
}

func TestConfigFromFlagsAndEnvironment(t *testing.T) {
	dir := t.TempDir()
	key, cert, ca := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "ca.pem")
	for _, p := range []string{key, cert, ca} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, err := parse(t, []string{"--etcd-endpoints", "https://a:2379, https://b:2379", "--etcd-keyfile", key}, map[string]string{
		"WEFTD_ETCD_ENDPOINTS":   "http://ignored:2379", // the command line wins
		"WEFTD_ETCD_CERTFILE":    cert,
		"FLANNELD_ETCD_CAFILE":   ca,
		"FLANNELD_ETCD_PREFIX":   "/flannel/net",
		"WEFTD_ETCD_PREFIX":      "/weft/net/", // WEFTD_ wins over FLANNELD_
		"FLANNELD_ETCD_USERNAME": "u",
		"WEFTD_ETCD_PASSWORD":    "p",
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := f.Config()
	want := etcdv3.Config{Endpoints: []string{"https://a:2379", "https://b:2379"}, Prefix: "/weft/net/",
		KeyFile: key, CertFile: cert, CAFile: ca, Username: "u", Password: "p"}
	if err != nil || !reflect.DeepEqual(cfg, want) {
		t.Errorf("config %+v, %v; want %+v", cfg, err, want)
	}
}

// TestEndpointsTheClientDials: what the etcd client dials (flanneld hands the list to it
// unchanged) is accepted as written, host:port without a scheme included.
func TestEndpointsTheClientDials(t *testing.T) {
	for _, v := range []string{
		"127.0.0.1:2379", "etcd-0.etcd:2379,etcd-1.etcd:2379", "[fd00::1]:2379", "http://a:2379, b:2379",
		"https://etcd:2379", "unix:///run/etcd.sock", "unixs://etcd.sock",
	} {
		f, err := parse(t, []string{"--etcd-endpoints", v}, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := f.Config()
		if err != nil || strings.Join(cfg.Endpoints, ",") != strings.ReplaceAll(v, " ", "") {
			t.Errorf("%q: endpoints %q, %v", v, cfg.Endpoints, err)
		}
	}
}

// TestErrorsNameFlagAndValue: each refusal names the flag and the value.
func TestErrorsNameFlagAndValue(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--etcd-endpoints", "etcd"}, nil, `invalid value "etcd" for --etcd-endpoints: "etcd" is neither a URL nor host:port`},
		{nil, map[string]string{"FLANNELD_ETCD_ENDPOINTS": "http://a:2379,ftp://etcd:2379"}, `invalid value "http://a:2379,ftp://etcd:2379" for --etcd-endpoints: "ftp://etcd:2379": the etcd client dials`},
		{[]string{"--etcd-endpoints", "https://"}, nil, `"https://" names no host`},
		{[]string{"--etcd-endpoints", "http://a:2379,"}, nil, `invalid value "http://a:2379," for --etcd-endpoints: an endpoint is empty`},
		{[]string{"--etcd-cafile", "/nonexistent/ca.pem"}, nil, "--etcd-cafile /nonexistent/ca.pem: open /nonexistent/ca.pem: no such file or directory"},
		{nil, map[string]string{"WEFTD_ETCD_CERTFILE": "/nonexistent/cert.pem"}, "--etcd-certfile /nonexistent/cert.pem"},
		{[]string{"--etcd-keyfile", "/dev/null"}, nil, `--etcd-keyfile and --etcd-certfile go together (got keyfile "/dev/null", certfile "")`},
	} {
		f, err := parse(t, tc.args, tc.env)
		if err == nil {
			_, err = f.Config()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
}
