package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
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
	etcd           etcdflags.Flags
	etcdConfig     etcdv3.Config // from etcd, set by validate
	ifaces         []string
	ifaceRegexes   []string
	ifaceCanReach  string
	publicIP       string
	subnetFile     string
	renewMargin    int
	leaseTTL       time.Duration
	ipMasq         bool
	forwardRules   bool
	iptablesResync int
	restrictTunnel bool
	healthzIP      string
	healthzPort    int
	version        bool
	kube           kubeFlags // Kubernetes mode: kubeflags.go
}

// parseFlags parses args (without the program name) and the environment: a flag not on
// the command line is taken from WEFTD_<NAME>, else from FLANNELD_<NAME> (dashes become
// underscores, upper case). Unknown flags and bad values are errors naming them.
func parseFlags(args []string, getenv func(string) string) (*options, *pflag.FlagSet, error) {
	o := &options{}
	fs := pflag.NewFlagSet("weftd", pflag.ContinueOnError)
	fs.SortFlags = false
	o.etcd.AddTo(fs)
	fs.StringSliceVar(&o.ifaces, "iface", nil, "interface (name or IPv4 address) for inter-node traffic; repeatable, tried in order")
	fs.StringSliceVar(&o.ifaceRegexes, "iface-regex", nil, "regular expression matched against interface names and addresses; repeatable")
	fs.StringVar(&o.ifaceCanReach, "iface-can-reach", "", "use the interface the kernel would use to reach this IPv4 address")
	fs.StringVar(&o.publicIP, "public-ip", "", "IPv4 address peers send to (default: the interface's address)")
	fs.StringVar(&o.subnetFile, "subnet-file", "/run/flannel/subnet.env", "file to write the node's subnet, MTU and masquerade setting to")
	fs.IntVar(&o.renewMargin, "subnet-lease-renew-margin", 60, "minutes before expiry to renew the subnet lease (1-1439)")
	fs.DurationVar(&o.leaseTTL, "subnet-lease-ttl", 24*time.Hour, "TTL of the subnet lease (for tests)")
	_ = fs.MarkHidden("subnet-lease-ttl")
	fs.BoolVar(&o.ipMasq, "ip-masq", false, "masquerade traffic from the pod network to destinations outside it")
	fs.BoolVar(&o.forwardRules, "iptables-forward-rules", true, "add FORWARD rules accepting traffic from and to the pod network")
	fs.IntVar(&o.iptablesResync, "iptables-resync", 5, "seconds between checks that the iptables rules are in place")
	fs.BoolVar(&o.restrictTunnel, "restrict-tunnel-port", true, "drop encapsulated traffic (vxlan, udp, gre) from anyone but current peers")
	fs.StringVar(&o.healthzIP, "healthz-ip", "0.0.0.0", "address of the health endpoint")
	fs.IntVar(&o.healthzPort, "healthz-port", 0, "port of the health endpoint (/healthz, /readyz); 0 disables it")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	o.kube.addTo(fs, getenv)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlag(klogFlags.Lookup("v"))
	fs.AddGoFlag(klogFlags.Lookup("vmodule"))

	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("unexpected argument %q (weftd takes flags only)", fs.Arg(0))
	}
	if err := flagenv.Apply(fs, getenv, flagenv.WeftdPrefixes()...); err != nil {
		return nil, nil, err
	}
	return o, fs, o.validate()
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
		Etcd:               o.etcdConfig,
		Iface:              iface.Options{Ifaces: o.ifaces, Regexes: o.ifaceRegexes, CanReach: o.ifaceCanReach, PublicIP: o.publicIP},
		SubnetFile:         o.subnetFile,
		LeaseTTL:           o.leaseTTL,
		RenewMargin:        time.Duration(o.renewMargin) * time.Minute,
		IPMasq:             o.ipMasq,
		ForwardRules:       o.forwardRules,
		IPTablesSync:       time.Duration(o.iptablesResync) * time.Second,
		RestrictTunnelPort: o.restrictTunnel,
		Version:            version,
		Kube:               o.kube.config(),
	}
	if o.healthzPort != 0 {
		c.HealthzAddr = net.JoinHostPort(o.healthzIP, strconv.Itoa(o.healthzPort))
	}
	return c
}
