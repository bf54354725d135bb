package metrics

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, m *Metrics) map[string]model.Vector {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var parser expfmt.TextParser
	fams, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, rec.Body.String())
	}
	out := map[string]model.Vector{}
	for name, fam := range fams {
		v, err := expfmt.ExtractSamples(&expfmt.DecodeOptions{Timestamp: model.Now()}, fam)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = v
	}
	return out
}

func value(t *testing.T, got map[string]model.Vector, name string, labels map[string]string) float64 {
	t.Helper()
	for _, s := range got[name] {
		match := true
		for k, v := range labels {
			if string(s.Metric[model.LabelName(k)]) != v {
				match = false
			}
		}
		if match {
			return float64(s.Value)
		}
	}
	t.Fatalf("no sample %s%v", name, labels)
	return 0
}

func TestMetricsMove(t *testing.T) {
	m := New("v-test")
	got := scrape(t, m)
	if value(t, got, "weft_lease_held", nil) != 0 || value(t, got, "weft_build_info", map[string]string{"version": "v-test"}) != 1 {
		t.Fatal("initial state wrong")
	}
	m.SetLease(subnet.Lease{Subnet: netip.MustParsePrefix("10.244.5.0/24"), TTLID: 7, Expiration: time.Now().Add(time.Hour)})
	m.LeaseRenewed(subnet.Lease{Expiration: time.Now().Add(2 * time.Hour)})
	m.LeaseRenewFailed(nil)
	m.StoreError("list", nil)
	m.WatchResynced()
	m.SetPeers(3)
	m.Repaired("route")
	m.Repaired("route")
	m.SetPacketSource(func() (backend.PacketStats, bool) {
		return backend.PacketStats{
			Packets: map[string]uint64{"device-in": 10, "tunnel-in": 4},
			Bytes:   map[string]uint64{"device-in": 1000},
			Drops:   map[string]uint64{"not-peer": 2},
		}, true
	})
	got = scrape(t, m)
	for name, want := range map[string]float64{
		"weft_lease_held": 1, "weft_lease_renewals_total": 1, "weft_lease_renewal_failures_total": 1,
		"weft_watch_resyncs_total": 1, "weft_peers": 3,
	} {
		if v := value(t, got, name, nil); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	if v := value(t, got, "weft_lease_expires_in_seconds", nil); v < 7000 || v > 7200 {
		t.Errorf("expires in %v s, want about 7200", v)
	}
	if v := value(t, got, "weft_lease_info", map[string]string{"subnet": "10.244.5.0/24", "ipv6_subnet": "", "reserved": "false"}); v != 1 {
		t.Errorf("lease_info %v", v)
	}
	if v := value(t, got, "weft_dataplane_repairs_total", map[string]string{"kind": "route"}); v != 2 {
		t.Errorf("repairs %v", v)
	}
	if v := value(t, got, "weft_etcd_errors_total", map[string]string{"op": "list"}); v != 1 {
		t.Errorf("etcd errors %v", v)
	}
	if v := value(t, got, "weft_drops_total", map[string]string{"reason": "not-peer"}); v != 2 {
		t.Errorf("drops %v", v)
	}
	if v := value(t, got, "weft_packets_total", map[string]string{"direction": "device-in"}); v != 10 {
		t.Errorf("packets %v", v)
	}
	// A reservation has no expiry.
	m.SetLease(subnet.Lease{Subnet: netip.MustParsePrefix("10.244.5.0/24")})
	if v := value(t, scrape(t, m), "weft_lease_expires_in_seconds", nil); v != -1 {
		t.Errorf("reservation expiry %v, want -1", v)
	}
}

// The backend's mode and the ignored leases are gauges that follow what they are told.
func TestBackendInfoAndIgnored(t *testing.T) {
	m := New("v-test")
	m.SetBackend("wireguard", "userspace")
	m.LeasesIgnored(map[string]int{"outside-network": 2, "backend-type": 1})
	got := scrape(t, m)
	if value(t, got, "weft_backend_info", map[string]string{"backend": "wireguard", "mode": "userspace"}) != 1 {
		t.Error("weft_backend_info lacks wireguard/userspace")
	}
	if value(t, got, "weft_leases_ignored", map[string]string{"reason": "outside-network"}) != 2 ||
		value(t, got, "weft_leases_ignored", map[string]string{"reason": "backend-type"}) != 1 {
		t.Error("weft_leases_ignored counts wrong")
	}
	m.SetBackend("", "")
	m.LeasesIgnored(map[string]int{"backend-type": 1})
	got = scrape(t, m)
	if len(got["weft_backend_info"]) != 0 || len(got["weft_leases_ignored"]) != 1 {
		t.Errorf("stale series after reset: %v %v", got["weft_backend_info"], got["weft_leases_ignored"])
	}
}
