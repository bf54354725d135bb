package health

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestSnapshotReadiness(t *testing.T) {
	subnet := netip.MustParsePrefix("10.244.3.0/24")
	for _, tc := range []struct {
		name    string
		set     func(*State)
		missing []string
	}{
		{"nothing", func(*State) {}, []string{FactLease, FactSubnetFile, FactBackend}},
		{"lease only", func(s *State) { s.SetLease(subnet) }, []string{FactSubnetFile, FactBackend}},
		{"all", func(s *State) {
			s.SetLease(subnet)
			s.SetSubnetFile("/run/flannel/subnet.env")
			s.SetBackend("vxlan", true)
		}, nil},
		{"lease lost", func(s *State) {
			s.SetLease(subnet)
			s.SetSubnetFile("/run/flannel/subnet.env")
			s.SetBackend("vxlan", true)
			s.SetLease(netip.Prefix{})
		}, []string{FactLease}},
		{"backend closed", func(s *State) {
			s.SetLease(subnet)
			s.SetSubnetFile("/run/flannel/subnet.env")
			s.SetBackend("vxlan", true)
			s.SetBackend("vxlan", false)
		}, []string{FactBackend}},
		{"subnet file stale", func(s *State) {
			s.SetLease(subnet)
			s.SetSubnetFile("/run/flannel/subnet.env")
			s.SetBackend("udp", true)
			s.SetSubnetFile("")
		}, []string{FactSubnetFile}},
		{"an error does not affect readiness", func(s *State) {
			s.SetLease(subnet)
			s.SetSubnetFile("/run/flannel/subnet.env")
			s.SetBackend("host-gw", true)
			s.SetError(errors.New("etcd: request timed out"))
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st State // the zero value is usable
			tc.set(&st)
			snap := st.Snapshot()
			if !slices.Equal(snap.Missing, tc.missing) || snap.Ready != (len(tc.missing) == 0) {
				t.Fatalf("ready %v missing %q, want missing %q", snap.Ready, snap.Missing, tc.missing)
			}
		})
	}
}

func TestStateRecordsDetails(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	st := NewState(func() time.Time { return now })
	from, to := netip.MustParsePrefix("10.244.3.0/24"), netip.MustParsePrefix("10.244.9.0/24")

	st.SetLease(from)
	now = now.Add(time.Minute)
	st.SetLease(from) // unchanged: keeps its time
	st.NoteSubnetChange(from, to)
	st.SetLease(to)
	st.SetBackend("vxlan", true)
	st.SetError(errors.New("boom"))
	snap := st.Snapshot()
	if snap.Subnet != to || !snap.LeaseSince.Equal(now) {
		t.Errorf("lease %v since %v", snap.Subnet, snap.LeaseSince)
	}
	if c := snap.SubnetChange; c == nil || c.From != from || c.To != to || !c.At.Equal(now) {
		t.Errorf("subnet change %+v", c)
	}
	if snap.Backend != "vxlan" || snap.LastError != "boom" || !snap.LastErrorAt.Equal(now) {
		t.Errorf("got %+v", snap)
	}
	snap.SubnetChange.To = netip.Prefix{} // a snapshot is a copy
	if st.Snapshot().SubnetChange.To != to {
		t.Error("Snapshot shares SubnetChange with the State")
	}
	st.SetError(nil)
	if s := st.Snapshot(); s.LastError != "" || !s.LastErrorAt.IsZero() {
		t.Errorf("SetError(nil) left %q at %v", s.LastError, s.LastErrorAt)
	}
}

func TestStateConcurrentUse(t *testing.T) {
	st := NewState(nil)
	subnet := netip.MustParsePrefix("10.244.3.0/24")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				switch (i + j) % 6 {
				case 0:
					st.SetLease(subnet)
				case 1:
					st.SetSubnetFile("/run/flannel/subnet.env")
				case 2:
					st.SetBackend("vxlan", j%2 == 0)
				case 3:
					st.NoteSubnetChange(subnet, subnet)
				case 4:
					st.SetError(errors.New("x"))
				default:
					_ = st.Snapshot()
				}
			}
		})
	}
	wg.Wait()
}
