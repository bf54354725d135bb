package bench

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/backend/backends"
	"github.com/weftnet/weft/test/cluster"
)

// Options say what one run measures. Defaults and Quick fill in the zero fields.
type Options struct {
	// Out is the folder under which the run's folder <Out>/<timestamp>/ is made.
	Out string
	// Duration of one iperf3 run (iperf3 -t, whole seconds, at least 1).
	Duration time.Duration
	// Reps is the number of iperf3 runs per path and stream count.
	Reps int
	// Streams are the parallel stream counts (iperf3 -P) measured on every path.
	Streams []int
	// PingCount and PingInterval: the latency samples (ping -c, ping -i).
	PingCount    int
	PingInterval time.Duration
	// IdlePings is the number of idle-path latency samples, one every IdlePingInterval (a
	// request/response service's idle path: nothing else in flight); 0 skips them.
	IdlePings int
	// Joins is the number of node joins timed per backend (0 skips convergence).
	Joins int
	// Scale is the number of fake peer leases in the scale test (0 skips it).
	Scale int
	// Backends to measure, by bench name (see BackendNames); the underlay always runs.
	Backends []string
	// WeftdPath is the weftd binary; empty builds ./cmd/weftd from the module.
	WeftdPath string
	// Timeout bounds the whole run; phases that do not fit are recorded as skipped.
	Timeout time.Duration
	// JoinTimeout bounds one join's waits (lease, routes, pods, leave).
	JoinTimeout time.Duration
	// ScaleTimeout bounds the wait for weftd to program all Scale peers (each time).
	ScaleTimeout time.Duration
	// Quick marks a smoke run (recorded in the results; the numbers mean little).
	Quick bool
	// Command is the command line recorded in the results ("" is fine).
	Command string
}

// Spec is one measured path's recipe: a backend name and the network config it writes.
type Spec struct {
	// Name is the bench's name for the path: "host-gw", "vxlan", "udp", "udp-nobatch", "gre",
	// "wireguard" (userspace: wireguard-go in weftd).
	Name string
	// Backend is the network config's Backend object, as JSON.
	Backend string
	// Userspace: packets cross weftd's own process (CPU per GB is measured, and the
	// convergence probe is a ping because the peer table is not in the kernel).
	Userspace bool
	// IPv6: the network is dual stack and the traffic goes pod to pod over IPv6, compared
	// with the IPv6 underlay. Convergence is measured on the IPv4 rows only.
	IPv6 bool
}

// IdlePingInterval is the gap between idle-path latency samples: 5 pings a second.
const IdlePingInterval = 200 * time.Millisecond

// IPv6Network is the IPv6 pod network of the IPv6 rows (their network is dual stack).
const IPv6Network = "fd00:10:244::/56"

// Network is the pod network of the throughput and convergence clusters.
const Network = "10.244.0.0/16"

// ScaleNetwork is the pod network of the scale cluster: 32767 subnets of /24.
const ScaleNetwork = "10.128.0.0/9"

// MaxScale is the largest Scale: the subnets of ScaleNetwork less room for real nodes.
const MaxScale = 30000

// maxJoins keeps the node count (3 fixed nodes + one fresh node per join) in range.
const maxJoins = cluster.MaxNodes - fixedNodes

// fixedNodes run weftd for a whole backend phase: pods on nodes 0 and 1 carry the traffic,
// node 2 is one more observer for convergence.
const fixedNodes = 3

// specs is the table of paths the bench knows, in report order.
func specs() []Spec {
	return []Spec{
		{Name: "host-gw", Backend: `{"Type":"host-gw"}`},
		{Name: "vxlan", Backend: `{"Type":"vxlan"}`},
		{Name: "udp", Backend: `{"Type":"udp","Batch":true}`, Userspace: true},
		{Name: "udp-nobatch", Backend: `{"Type":"udp","Batch":false}`, Userspace: true},
		{Name: "gre", Backend: `{"Type":"gre","Mode":"userspace"}`, Userspace: true},
		{Name: "wireguard", Backend: `{"Type":"wireguard","Implementation":"userspace"}`, Userspace: true},
		{Name: "host-gw-v6", Backend: `{"Type":"host-gw"}`, IPv6: true},
		{Name: "vxlan-v6", Backend: `{"Type":"vxlan"}`, IPv6: true},
		{Name: "gre-v6", Backend: `{"Type":"gre","Mode":"userspace"}`, Userspace: true, IPv6: true},
	}
}

// BackendNames lists the names Options.Backends accepts, in report order.
func BackendNames() []string {
	all := specs()
	names := make([]string, len(all))
	for i, s := range all {
		names[i] = s.Name
	}
	return names
}

// SpecFor returns the recipe for a bench backend name.
func SpecFor(name string) (Spec, bool) {
	for _, s := range specs() {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

// NetworkConfig is the <prefix>/config value for a spec and a pod network.
func (s Spec) NetworkConfig(network string) string {
	if s.IPv6 {
		return fmt.Sprintf(`{"Network":%q,"EnableIPv6":true,"IPv6Network":%q,"Backend":%s}`, network, IPv6Network, s.Backend)
	}
	return fmt.Sprintf(`{"Network":%q,"Backend":%s}`, network, s.Backend)
}

// Supported reports why this weft build cannot run the spec ("" when it can): the config
// is checked exactly as weftd checks it, so an unregistered backend (gre before it lands)
// is skipped with a note rather than failed.
func (s Spec) Supported() string {
	if _, _, err := backends.ParseNetworkConfig([]byte(s.NetworkConfig(Network))); err != nil {
		return err.Error()
	}
	return ""
}

// Defaults returns the full-run options: 10 s runs, 3 repetitions, 1 and 4 streams, 100
// pings at 10 ms, 20 joins, 2000 scale peers, every backend.
func Defaults() Options {
	return Options{
		Out:          "results",
		Duration:     10 * time.Second,
		Reps:         3,
		Streams:      []int{1, 4},
		PingCount:    100,
		PingInterval: 10 * time.Millisecond,
		IdlePings:    25,
		Joins:        20,
		Scale:        2000,
		Backends:     BackendNames(),
		Timeout:      45 * time.Minute,
		JoinTimeout:  30 * time.Second,
		ScaleTimeout: 10 * time.Minute,
	}
}

// QuickDefaults are the smoke-test options: every measurement once, as small as it can be.
func QuickDefaults() Options {
	o := Defaults()
	o.Duration = time.Second
	o.Reps = 1
	o.PingCount = 20
	o.IdlePings = 5
	o.Joins = 2
	o.Scale = 20
	o.Timeout = 5 * time.Minute
	o.JoinTimeout = 20 * time.Second
	o.ScaleTimeout = time.Minute
	o.Quick = true
	return o
}

// Validate checks the options (after defaults are filled in).
func (o Options) Validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if o.Out == "" {
		bad("the results folder must not be empty")
	}
	if o.Duration < time.Second || o.Duration%time.Second != 0 {
		bad("duration %v: want whole seconds, at least 1s (iperf3 -t)", o.Duration)
	}
	if o.Reps < 1 || o.Reps > 100 {
		bad("reps %d: want 1 to 100", o.Reps)
	}
	if len(o.Streams) == 0 {
		bad("no stream counts")
	}
	for i, s := range o.Streams {
		if s < 1 || s > 128 {
			bad("streams %d: want 1 to 128 (iperf3 -P)", s)
		}
		if slices.Contains(o.Streams[:i], s) {
			bad("streams %d given twice", s)
		}
	}
	if o.PingCount < 1 || o.PingCount > 100000 {
		bad("ping count %d: want 1 to 100000", o.PingCount)
	}
	if o.IdlePings < 0 || o.IdlePings > 10000 {
		bad("idle pings %d: want 0 to 10000", o.IdlePings)
	}
	if o.PingInterval < time.Millisecond {
		bad("ping interval %v: want at least 1ms", o.PingInterval)
	}
	if o.Joins < 0 || o.Joins > maxJoins {
		bad("joins %d: want 0 to %d", o.Joins, maxJoins)
	}
	if o.Scale < 0 || o.Scale > MaxScale {
		bad("scale %d: want 0 to %d", o.Scale, MaxScale)
	}
	seen := map[string]bool{}
	for _, b := range o.Backends {
		if _, ok := SpecFor(b); !ok {
			bad("backend %q: want one of %s", b, strings.Join(BackendNames(), ", "))
		}
		if seen[b] {
			bad("backend %q given twice", b)
		}
		seen[b] = true
	}
	if o.Timeout <= 0 || o.JoinTimeout <= 0 || o.ScaleTimeout <= 0 {
		bad("timeouts must be positive")
	}
	return errors.Join(errs...)
}

// orderedBackends returns the chosen backends in report order.
func (o Options) orderedBackends() []Spec {
	var out []Spec
	for _, s := range specs() {
		if slices.Contains(o.Backends, s.Name) {
			out = append(out, s)
		}
	}
	return out
}
