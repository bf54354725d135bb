// Package metrics exposes weftd's state in the Prometheus text format, with the Prometheus
// Go client and a registry of its own (never the global one).
//
// It observes and reports only: the daemon and the subnet Manager call its methods, and a
// userspace backend's packet counters are read at scrape time through a function the daemon
// registers, so the packet path pays nothing for metrics.
package metrics

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// Metrics holds weftd's metrics. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	leaseHeld     prometheus.Gauge
	leaseInfo     *prometheus.GaugeVec
	renewals      prometheus.Counter
	renewFailures prometheus.Counter
	storeErrors   *prometheus.CounterVec
	resyncs       prometheus.Counter
	peers         prometheus.Gauge
	ignored       *prometheus.GaugeVec
	backendInfo   *prometheus.GaugeVec
	repairs       *prometheus.CounterVec
	subnetChanges prometheus.Counter

	mu         sync.Mutex // guards the fields below
	expiration time.Time  // of the held lease; zero: none or a reservation
	subnet     netip.Prefix
	packets    func() (backend.PacketStats, bool)
}

// New returns the metrics with Go runtime and process collectors registered.
func New(version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "weft", Name: name, Help: help}
	}
	m.leaseHeld = prometheus.NewGauge(prometheus.GaugeOpts(f("lease_held", "1 while this node holds a subnet lease.")))
	m.leaseInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts(f("lease_info", "The held lease: its IPv4 and IPv6 subnets (\"\" for a family the network does not run) and whether it is a reservation (value 1).")), []string{"subnet", "ipv6_subnet", "reserved"})
	m.renewals = prometheus.NewCounter(prometheus.CounterOpts(f("lease_renewals_total", "Successful lease renewals.")))
	m.renewFailures = prometheus.NewCounter(prometheus.CounterOpts(f("lease_renewal_failures_total", "Failed lease renewal attempts.")))
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts(f("etcd_errors_total", "Failed etcd operations, by operation.")), []string{"op"})
	m.resyncs = prometheus.NewCounter(prometheus.CounterOpts(f("watch_resyncs_total", "Times the lease watch listed all leases again (compaction, broken watch).")))
	m.peers = prometheus.NewGauge(prometheus.GaugeOpts(f("peers", "Peers (other nodes' leases) currently known.")))
	m.ignored = prometheus.NewGaugeVec(prometheus.GaugeOpts(f("leases_ignored", "Leases in the store that are not peers of this node, by reason (outside-network, address-family, overlap, public-ip, own-public-ip, backend-type, backend-data, malformed).")), []string{"reason"})
	m.backendInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts(f("backend_info", "The active backend and how it runs (mode: kernel or userspace for gre and wireguard, empty for the others); value 1.")), []string{"backend", "mode"})
	m.repairs = prometheus.NewCounterVec(prometheus.CounterOpts(f("dataplane_repairs_total", "Kernel state put back after it was changed or deleted by someone else, by kind.")), []string{"kind"})
	m.subnetChanges = prometheus.NewCounter(prometheus.CounterOpts(f("subnet_changes_total", "Times this node had to take a different subnet after losing its lease.")))
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts(f("build_info", "weftd's version (value 1).")), []string{"version"})
	build.WithLabelValues(version).Set(1)
	expiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts(f("lease_expires_in_seconds", "Seconds until the held lease expires unless renewed; 0 without a lease, -1 for a reservation (no TTL).")), m.expiresIn)

	m.reg.MustRegister(m.leaseHeld, m.leaseInfo, m.renewals, m.renewFailures, m.storeErrors, m.resyncs,
		m.peers, m.ignored, m.backendInfo, m.repairs, m.subnetChanges, build, expiry, packetCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics (for /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// SetLease records the held lease; a zero Lease means none is held.
func (m *Metrics) SetLease(l subnet.Lease) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leaseInfo.Reset()
	m.subnet, m.expiration = l.FirstSubnet(), l.Expiration
	if l.IsZero() {
		m.leaseHeld.Set(0)
		return
	}
	m.leaseHeld.Set(1)
	reserved := "false"
	if l.Reserved() {
		reserved = "true"
	}
	m.leaseInfo.WithLabelValues(prefixLabel(l.Subnet), prefixLabel(l.IPv6Subnet), reserved).Set(1)
}

func (m *Metrics) expiresIn() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case !m.subnet.IsValid():
		return 0
	case m.expiration.IsZero():
		return -1
	}
	return max(time.Until(m.expiration).Seconds(), 0)
}

// SubnetChanged counts a move to another subnet.
func (m *Metrics) SubnetChanged() { m.subnetChanges.Inc() }

// SetPeers records how many peers are known.
func (m *Metrics) SetPeers(n int) { m.peers.Set(float64(n)) }

// Repaired counts a repair of kernel state of the given kind (route, neigh, fdb, device,
// address, iptables).
func (m *Metrics) Repaired(kind string) { m.repairs.WithLabelValues(kind).Inc() }

// SetPacketSource registers the function read at scrape time for packet counters (nil
// removes it). ok=false from the function means "no counters now".
func (m *Metrics) SetPacketSource(f func() (backend.PacketStats, bool)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.packets = f
}

// The subnet.Observer methods.
var _ subnet.Observer = (*Metrics)(nil)

// LeaseRenewed implements subnet.Observer.
func (m *Metrics) LeaseRenewed(l subnet.Lease) {
	m.renewals.Inc()
	m.mu.Lock()
	m.expiration = l.Expiration
	m.mu.Unlock()
}

// LeaseRenewFailed implements subnet.Observer.
func (m *Metrics) LeaseRenewFailed(error) { m.renewFailures.Inc() }

// WatchResynced implements subnet.Observer.
func (m *Metrics) WatchResynced() { m.resyncs.Inc() }

// SetBackend records the active backend and its mode (kernel or userspace, where the
// backend has both); an empty btype means none is active.
func (m *Metrics) SetBackend(btype, mode string) {
	m.backendInfo.Reset()
	if btype != "" {
		m.backendInfo.WithLabelValues(btype, mode).Set(1)
	}
}

// LeasesIgnored implements subnet.Observer.
func (m *Metrics) LeasesIgnored(byReason map[string]int) {
	m.ignored.Reset()
	for reason, n := range byReason {
		m.ignored.WithLabelValues(reason).Set(float64(n))
	}
}

// StoreError implements subnet.Observer.
func (m *Metrics) StoreError(op string, _ error) { m.storeErrors.WithLabelValues(op).Inc() }

// packetCollector reads a userspace backend's counters at scrape time.
type packetCollector struct{ m *Metrics }

var (
	packetsDesc = prometheus.NewDesc("weft_packets_total", "Packets through the userspace data plane, by direction (device-in, tunnel-out, tunnel-in, device-out).", []string{"direction"}, nil)
	bytesDesc   = prometheus.NewDesc("weft_bytes_total", "Bytes (inner IP packets) through the userspace data plane, by direction.", []string{"direction"}, nil)
	dropsDesc   = prometheus.NewDesc("weft_drops_total", "Packets the userspace data plane discarded, by reason.", []string{"reason"}, nil)
	icmpDesc    = prometheus.NewDesc("weft_icmp_errors_sent_total", "ICMP errors (net unreachable, time exceeded) generated by the userspace data plane.", nil, nil)
)

func (c packetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- packetsDesc
	ch <- bytesDesc
	ch <- dropsDesc
	ch <- icmpDesc
}

func (c packetCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	f := c.m.packets
	c.m.mu.Unlock()
	if f == nil {
		return
	}
	ps, ok := f()
	if !ok {
		return
	}
	for dir, v := range ps.Packets {
		ch <- prometheus.MustNewConstMetric(packetsDesc, prometheus.CounterValue, float64(v), dir)
	}
	for dir, v := range ps.Bytes {
		ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(v), dir)
	}
	for reason, v := range ps.Drops {
		ch <- prometheus.MustNewConstMetric(dropsDesc, prometheus.CounterValue, float64(v), reason)
	}
	ch <- prometheus.MustNewConstMetric(icmpDesc, prometheus.CounterValue, float64(ps.ICMPErrors))
}

// prefixLabel is a label value for p: "" when p is zero.
func prefixLabel(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}
