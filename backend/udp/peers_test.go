package udp

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/subnet"
)

func lease(sn, pub, backendType string) subnet.Lease {
	return subnet.Lease{Subnet: netip.MustParsePrefix(sn), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(pub), BackendType: backendType}}
}

func add(l subnet.Lease) subnet.Event { return subnet.Event{Type: subnet.Added, Lease: l} }
func del(l subnet.Lease) subnet.Event { return subnet.Event{Type: subnet.Removed, Lease: l} }

func TestPeerSetApply(t *testing.T) {
	type step struct {
		ev      subnet.Event
		kind    changeKind
		foreign bool
	}
	tests := []struct {
		name  string
		steps []step
		table map[string]string // subnet -> endpoint after all steps
	}{
		{"add, repeat, change, remove", []step{
			{add(lease("10.244.2.0/24", "192.0.2.2", "")), added, false},
			{add(lease("10.244.2.0/24", "192.0.2.2", "")), unchanged, false},
			{add(lease("10.244.2.0/24", "192.0.2.9", "")), updated, false},
			{del(lease("10.244.2.0/24", "192.0.2.9", "")), removed, false},
			{del(lease("10.244.2.0/24", "192.0.2.9", "")), unchanged, false},
		}, map[string]string{}},
		{"any backend type is accepted, foreign ones flagged once", []step{
			{add(lease("10.244.2.0/24", "192.0.2.2", "udp")), added, false},
			{add(lease("10.244.3.0/24", "192.0.2.3", "vxlan")), added, true},
			{add(lease("10.244.3.0/24", "192.0.2.3", "vxlan")), unchanged, false},
			{add(lease("10.244.3.0/24", "192.0.2.3", "host-gw")), updated, true},
			{add(lease("10.244.3.0/24", "192.0.2.3", "")), updated, false},
		}, map[string]string{"10.244.2.0/24": "192.0.2.2:8285", "10.244.3.0/24": "192.0.2.3:8285"}},
		{"updates of one subnet, a peer moving to another", []step{
			{add(lease("10.244.2.0/24", "192.0.2.2", "")), added, false},
			{add(lease("10.244.2.0/24", "192.0.2.2", "udp")), updated, false},
			{del(lease("10.244.2.0/24", "192.0.2.2", "udp")), removed, false},
			{add(lease("10.244.5.0/24", "192.0.2.2", "")), added, false},
		}, map[string]string{"10.244.5.0/24": "192.0.2.2:8285"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newPeerSet(8285)
			for i, st := range tt.steps {
				c := s.apply(st.ev)
				if c.kind != st.kind || c.foreign != st.foreign {
					t.Fatalf("step %d: kind %d foreign %v, want %d %v", i, c.kind, c.foreign, st.kind, st.foreign)
				}
			}
			tab, err := s.table()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, p := range tab.Peers() {
				got[p.Subnet.String()] = p.Endpoint.String()
			}
			if len(got) != len(tt.table) {
				t.Fatalf("table %v, want %v", got, tt.table)
			}
			for k, v := range tt.table {
				if got[k] != v {
					t.Fatalf("table %v, want %v", got, tt.table)
				}
			}
		})
	}
}

// TestTypeTakesAnyPeerType: like flanneld's udp backend, peers of every BackendType are
// admitted (flanneld's own udp leases carry none).
func TestTypeTakesAnyPeerType(t *testing.T) {
	if r := Type().Admission(); !r.AnyBackendType || r.BackendType != Name || r.CheckData != nil {
		t.Fatalf("admission rule %+v, want any backend type", r)
	}
}
