package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/daemon"
	"github.com/weftnet/weft/pkg/etcdflags"
	"github.com/weftnet/weft/pkg/flagenv"
	"github.com/weftnet/weft/pkg/iface"
	"github.com/weftnet/weft/subnet/etcdv3"
)

// options mirrors flanneld's flags, by the same names.
type options struct {
	etcd                etcdflags.Flags
	etcdConfig          etcdv3.Config // from etcd, set by validate
	ifaces              []string
	ifaceRegexes        []string
	ifaceCanReach       string
	publicIP            string
	publicIPv6          string
	subnetFile          string
	renewMargin         int
	leaseTTL            time.Duration
	ipMasq              bool
	ipMasqNoRandomFully bool
	forwardRules        bool
	iptablesResync      int
	blackholeRoute      bool
	restrictTunnel      bool
	healthzIP           string
	healthzPort         int
	version             bool
	kube                kubeFlags // Kubernetes mode: kubeflags.go
}

// flagSet declares weftd's flags, bound to o: flanneld's names and defaults, weft's own
// (--restrict-tunnel-port, the hidden --subnet-lease-ttl), klog's -v, -vmodule and
// -log_backtrace_at as flanneld copies them.
func (o *options) flagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("weftd", pflag.ContinueOnError)
	fs.SortFlags = false
	o.etcd.AddTo(fs)
	// Repeatable, one value per occurrence, as flanneld's: a comma is part of the value
	// (a regex such as ^e[a-z]{1,3}[0-9]$ has one).
	fs.StringArrayVar(&o.ifaces, "iface", nil, "interface (name or IPv4 address) for inter-node traffic; repeat the flag for more, tried in order")
	fs.StringArrayVar(&o.ifaceRegexes, "iface-regex", nil, "regular expression matched against interface addresses, then names; repeat the flag for more")
	fs.StringVar(&o.ifaceCanReach, "iface-can-reach", "", "use the interface the kernel would use to reach this IPv4 address")
	fs.StringVar(&o.publicIP, "public-ip", "", "IPv4 address peers send to (default: the interface's address)")
	fs.StringVar(&o.publicIPv6, "public-ipv6", "", "IPv6 address peers send to in a network that runs IPv6 (default: the interface's global IPv6 address)")
	fs.StringVar(&o.subnetFile, "subnet-file", "/run/flannel/subnet.env", "file to write the node's subnet, MTU and masquerade setting to")
	fs.IntVar(&o.renewMargin, "subnet-lease-renew-margin", 60, "minutes before expiry to renew the subnet lease (1-1439)")
	fs.DurationVar(&o.leaseTTL, "subnet-lease-ttl", 24*time.Hour, "TTL of the subnet lease (for tests)")
	_ = fs.MarkHidden("subnet-lease-ttl")
	fs.BoolVar(&o.ipMasq, "ip-masq", false, "masquerade traffic from the pod network to destinations outside it")
	fs.BoolVar(&o.ipMasqNoRandomFully, "ip-masq-fully-random-disable", false, "masquerade without --random-fully")
	fs.BoolVar(&o.forwardRules, "iptables-forward-rules", true, "add FORWARD rules accepting traffic from and to the pod network")
	fs.IntVar(&o.iptablesResync, "iptables-resync", 5, "seconds between checks that the iptables rules (and the blackhole route) are in place")
	fs.BoolVar(&o.blackholeRoute, "ip-blackhole-route", false, "keep a blackhole route for this node's subnet: traffic to its unassigned addresses is dropped, not sent to the default route (for CNIs without a bridge, such as Canal)")
	fs.BoolVar(&o.restrictTunnel, "restrict-tunnel-port", true, "drop encapsulated traffic (vxlan, udp, gre) from anyone but current peers")
	fs.StringVar(&o.healthzIP, "healthz-ip", "0.0.0.0", "address of the health endpoint")
	fs.IntVar(&o.healthzPort, "healthz-port", 0, "port of the health endpoint (/healthz, /readyz); 0 disables it")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	// flanneld reads --version before its environment: FLANNELD_VERSION does nothing.
	flagenv.CommandLineOnly(fs, "version")
	o.kube.addTo(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	for _, name := range []string{"v", "vmodule", "log_backtrace_at"} {
		fs.AddGoFlag(klogFlags.Lookup(name))
	}
	return fs
}

// parseFlags parses args (without the program name) and environ (os.Environ's form) as
// flanneld parses its command line and environment: a flag not on the command line is taken
// from WEFTD_<NAME>, else from FLANNELD_<NAME> (dashes become underscores, upper case). Flags
// take Go's flag syntax as well as pflag's (goStyleArgs). Unknown flags, arguments, bad
// values are errors naming them. The warnings name the WEFTD_ and
// FLANNELD_ variables that match no flag, for the log.
func parseFlags(args, environ []string) (o *options, warnings []string, err error) {
	o = &options{}
	fs := o.flagSet()
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(goStyleArgs(fs, args)); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("unexpected argument %q (weftd takes flags only)", fs.Arg(0))
	}
	getenv := lookupIn(environ)
	o.kube.getenv = getenv
	if err := flagenv.Apply(fs, getenv, flagenv.WeftdPrefixes()...); err != nil {
		return nil, nil, err
	}
	for _, name := range flagenv.Unmatched(fs, environ, flagenv.WeftdPrefixes()...) {
		warnings = append(warnings, fmt.Sprintf("$%s names no flag weftd reads from the environment; ignored", name))
	}
	return o, warnings, o.validate()
}

// lookupIn is os.Getenv over environ.
func lookupIn(environ []string) func(string) string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

func (o *options) validate() error {
	if o.renewMargin < 1 || o.renewMargin > 1439 {
		return fmt.Errorf("invalid value %d for --subnet-lease-renew-margin: must be 1-1439 minutes", o.renewMargin)
	}
	if o.leaseTTL < 5*time.Second {
		return fmt.Errorf("invalid value %s for --subnet-lease-ttl: must be at least 5s", o.leaseTTL)
	}
	if o.iptablesResync < 1 {
		return fmt.Errorf("invalid value %d for --iptables-resync: must be at least 1 second", o.iptablesResync)
	}
	if o.healthzPort < 0 || o.healthzPort > 65535 {
		return fmt.Errorf("invalid value %d for --healthz-port: must be 0-65535", o.healthzPort)
	}
	if o.healthzPort != 0 && net.ParseIP(o.healthzIP) == nil {
		return fmt.Errorf("invalid value %q for --healthz-ip: not an IP address", o.healthzIP)
	}
	if o.subnetFile == "" {
		return fmt.Errorf("--subnet-file must not be empty")
	}
	var err error
	o.etcdConfig, err = o.etcd.Config()
	return err
}

func (o *options) daemonConfig(version string) daemon.Config {
	c := daemon.Config{
		Etcd:                o.etcdConfig,
		Iface:               iface.Options{Ifaces: o.ifaces, Regexes: o.ifaceRegexes, CanReach: o.ifaceCanReach, PublicIP: o.publicIP, PublicIPv6: o.publicIPv6},
		SubnetFile:          o.subnetFile,
		LeaseTTL:            o.leaseTTL,
		RenewMargin:         time.Duration(o.renewMargin) * time.Minute,
		IPMasq:              o.ipMasq,
		IPMasqNoRandomFully: o.ipMasqNoRandomFully,
		BlackholeRoute:      o.blackholeRoute,
		ForwardRules:        o.forwardRules,
		IPTablesSync:        time.Duration(o.iptablesResync) * time.Second,
		RestrictTunnelPort:  o.restrictTunnel,
		Version:             version,
		Kube:                o.kube.config(),
	}
	if o.healthzPort != 0 {
		c.HealthzAddr = net.JoinHostPort(o.healthzIP, strconv.Itoa(o.healthzPort))
	}
	return c
}
