package status

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func sample() Status {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return Status{
		Version: "v1.2.3",
		Time:    t0,
		Started: t0.Add(-time.Hour),
		Node: Node{Hostname: "node-a", Interface: "eth0",
			InterfaceIP: netip.MustParseAddr("192.0.2.1"), PublicIP: netip.MustParseAddr("192.0.2.1")},
		Lease: Lease{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.5.0/24"),
			Expires: t0.Add(23 * time.Hour), Renewed: t0.Add(-time.Minute)},
		Backend: Backend{Type: "vxlan", Active: true, Device: "flannel.1", MTU: 1450, Info: map[string]string{"vni": "1"}},
		Peers: []Peer{
			{Subnet: netip.MustParsePrefix("10.244.7.0/24"), PublicIP: netip.MustParseAddr("192.0.2.2"), BackendType: "vxlan", State: PeerProgrammed},
			{Subnet: netip.MustParsePrefix("10.244.9.0/24"), PublicIP: netip.MustParseAddr("192.0.2.3"), State: PeerIgnored, Reason: "BackendType \"\" is not vxlan"},
		},
		Counters: map[string]uint64{"leaseRenewals": 3, "storeErrors": 0},
	}
}

// TestJSONNames pins the wire names: they are a contract with weftctl and with scripts.
func TestJSONNames(t *testing.T) {
	b, err := json.Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"version":"v1.2.3"`, `"time":"2026-03-01T12:00:00Z"`, `"started":"2026-03-01T11:00:00Z"`,
		`"node":{"hostname":"node-a","interface":"eth0","interfaceIP":"192.0.2.1","publicIP":"192.0.2.1"}`,
		`"lease":{"network":"10.244.0.0/16","subnet":"10.244.5.0/24","reserved":false,"expires":"2026-03-02T11:00:00Z","renewed":"2026-03-01T11:59:00Z"}`,
		`"backend":{"type":"vxlan","active":true,"device":"flannel.1","mtu":1450,"info":{"vni":"1"}}`,
		`{"subnet":"10.244.7.0/24","publicIP":"192.0.2.2","backendType":"vxlan","state":"programmed"}`,
		`"state":"ignored","reason":"BackendType \"\" is not vxlan"`,
		`"counters":{"leaseRenewals":3,"storeErrors":0}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s\n%s", want, b)
		}
	}
	// A node without a lease omits what it does not know.
	b, _ = json.Marshal(Status{Version: "dev"})
	if got := string(b); strings.Contains(got, "subnet") || strings.Contains(got, "expires") || strings.Contains(got, "publicIP") {
		t.Errorf("empty status carries zero values: %s", got)
	}
}

func TestPeerStateText(t *testing.T) {
	for _, tc := range []struct {
		p    Peer
		want string
	}{
		{Peer{State: PeerProgrammed}, "programmed"},
		{Peer{State: PeerError, Reason: "network is unreachable"}, "error: network is unreachable"},
		{Peer{State: PeerIgnored, Reason: "backend udp"}, "ignored: backend udp"},
	} {
		if got := tc.p.StateText(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestHandlerAndFetch(t *testing.T) {
	var calls atomic.Int32
	want := sample()
	srv := httptest.NewServer(Handler(func() Status { calls.Add(1); return want }))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	got, err := Fetch(ctx, srv.Client(), addr)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}

	resp, err := srv.Client().Get(srv.URL + Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}

	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(m, srv.URL+Path, strings.NewReader("{}"))
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d Allow=%q, want 405 Allow=GET, HEAD", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("get called %d times for 2 GETs, want 2", n)
	}
}

func TestHandlerNilPeersIsEmptyList(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler(func() Status { return Status{Version: "dev"} }).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path, nil))
	if !strings.Contains(rec.Body.String(), `"peers": []`) {
		t.Errorf("nil peers not served as []:\n%s", rec.Body.String())
	}
	rec = httptest.NewRecorder()
	Handler(func() Status { return Status{} }).ServeHTTP(rec, httptest.NewRequest(http.MethodHead, Path, nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Errorf("HEAD: %d with %d body bytes, want 200 and none", rec.Code, rec.Body.Len())
	}
}

func TestFetchErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("not json")) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := Fetch(ctx, nil, addr); err == nil || !strings.Contains(err.Error(), "not a status document") {
		t.Errorf("bad body: %v", err)
	}
	if _, err := Fetch(ctx, nil, "no-port"); err == nil || !strings.Contains(err.Error(), `"no-port" is not host:port`) {
		t.Errorf("bad address: %v", err)
	}

	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	_, err := Fetch(ctx, nil, strings.TrimPrefix(notFound.URL, "http://"))
	var he *HTTPError
	if !errors.As(err, &he) || he.Code != http.StatusNotFound {
		t.Errorf("404: %v, want an *HTTPError with code 404", err)
	}
}

// dualStackSample is a dual-stack node with a dual-stack peer and an IPv6-only peer.
func dualStackSample() Status {
	s := sample()
	s.Node.InterfaceIPv6 = netip.MustParseAddr("2001:db8::1")
	s.Node.PublicIPv6 = netip.MustParseAddr("2001:db8::1")
	s.Lease.IPv6Network = netip.MustParsePrefix("fd00:10::/56")
	s.Lease.IPv6Subnet = netip.MustParsePrefix("fd00:10:0:5::/64")
	s.Peers = []Peer{
		{Subnet: netip.MustParsePrefix("10.244.7.0/24"), PublicIP: netip.MustParseAddr("192.0.2.2"),
			IPv6Subnet: netip.MustParsePrefix("fd00:10:0:7::/64"), PublicIPv6: netip.MustParseAddr("2001:db8::2"),
			BackendType: "vxlan", State: PeerProgrammed},
		{IPv6Subnet: netip.MustParsePrefix("fd00:10:0:9::/64"), PublicIPv6: netip.MustParseAddr("2001:db8::3"),
			BackendType: "vxlan", State: PeerProgrammed},
	}
	return s
}

// TestJSONNamesIPv6 pins the IPv6 wire names, added beside the IPv4 ones: an IPv4-only
// document is what it was (no IPv6 name in it), a dual-stack one carries both families,
// and an IPv6-only peer has empty IPv4 fields.
func TestJSONNamesIPv6(t *testing.T) {
	b, err := json.Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToLower(string(b)), "ipv6") {
		t.Errorf("IPv4-only status carries IPv6 fields: %s", b)
	}
	b, err = json.Marshal(dualStackSample())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"node":{"hostname":"node-a","interface":"eth0","interfaceIP":"192.0.2.1","publicIP":"192.0.2.1","interfaceIPv6":"2001:db8::1","publicIPv6":"2001:db8::1"}`,
		`"lease":{"network":"10.244.0.0/16","subnet":"10.244.5.0/24","ipv6Network":"fd00:10::/56","ipv6Subnet":"fd00:10:0:5::/64","reserved":false,`,
		`{"subnet":"10.244.7.0/24","publicIP":"192.0.2.2","ipv6Subnet":"fd00:10:0:7::/64","publicIPv6":"2001:db8::2","backendType":"vxlan","state":"programmed"}`,
		`{"subnet":"","publicIP":"","ipv6Subnet":"fd00:10:0:9::/64","publicIPv6":"2001:db8::3","backendType":"vxlan","state":"programmed"}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s\n%s", want, b)
		}
	}
	var back Status
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if want := dualStackSample(); !reflect.DeepEqual(back, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, want)
	}
}
