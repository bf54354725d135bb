package subnet_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcdv3"
	"github.com/weftnet/weft/test/etcdtest"
)

// Dual-stack nodes racing for leases over one real etcd. A lease key names both subnets
// (10.244.5.0-24&fd00:10:244:5::-64), so two nodes that chose the same subnet of one family
// and different subnets of the other write different keys: the store itself must refuse the
// second (subnet/etcdv3's CreateLease), or two nodes route the same pods.

const (
	raceManagers = 8
	raceRounds   = 6
)

// raceAttrs is manager i's node: distinct public addresses of both families.
func raceAttrs(i int) subnet.LeaseAttrs {
	return subnet.LeaseAttrs{
		PublicIP:    netip.MustParseAddr(nodeIP(i)),
		PublicIPv6:  netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i+1)),
		BackendType: "vxlan",
	}
}

// raceRegistry is a registry below a prefix of its own, so that every round starts empty.
func raceRegistry(t *testing.T, srv *etcdtest.Server, prefix string) *etcdv3.Registry {
	t.Helper()
	reg, err := etcdv3.New(etcdv3.Config{Endpoints: []string{srv.Endpoint()}, Prefix: prefix}, ktesting.NewLogger(t, ktesting.NewConfig()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

// racer is one node's view of the store: its first listing can miss the keys in hide (a
// snapshot taken just before they were written), and it counts the create races it lost.
type racer struct {
	subnet.Registry
	hide map[string]bool
	lost *atomic.Int64

	mu     sync.Mutex // guards listed
	listed bool
}

func (r *racer) ListLeases(ctx context.Context) (subnet.LeaseList, error) {
	list, err := r.Registry.ListLeases(ctx)
	r.mu.Lock()
	first := !r.listed
	r.listed = true
	r.mu.Unlock()
	if err != nil || !first || len(r.hide) == 0 {
		return list, err
	}
	var kept []subnet.Lease
	for _, l := range list.Leases {
		if !r.hide[l.Key()] {
			kept = append(kept, l)
		}
	}
	list.Leases = kept
	return list, nil
}

func (r *racer) CreateLease(ctx context.Context, sn, sn6 netip.Prefix, attrs subnet.LeaseAttrs, ttl time.Duration) (subnet.Lease, error) {
	l, err := r.Registry.CreateLease(ctx, sn, sn6, attrs, ttl)
	if errors.Is(err, subnet.ErrTaken) {
		r.lost.Add(1)
	}
	return l, err
}

// raceRound starts one Acquire per racer at the same moment and returns their leases.
// rnd(i) is manager i's random source (nil: a random seed).
func raceRound(t *testing.T, ctx context.Context, cfg *subnet.Config, racers []*racer, rnd func(i int) *rand.Rand) []subnet.Lease {
	t.Helper()
	leases := make([]subnet.Lease, len(racers))
	errs := make([]error, len(racers))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, r := range racers {
		m := subnet.NewManager(subnet.ManagerConfig{
			Registry: r, Network: cfg, TTL: time.Hour, Rand: rnd(i),
			Log: ktesting.NewLogger(t, ktesting.NewConfig()),
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			leases[i], errs[i] = m.Acquire(ctx, raceAttrs(i), subnet.Lease{})
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("manager %d (%s) got no lease: %v", i, nodeIP(i), err)
		}
	}
	return leases
}

// checkDistinct fails unless no two live leases in the store share an IPv4 or an IPv6
// subnet and every manager's lease is in the store, naming its node.
func checkDistinct(t *testing.T, ctx context.Context, reg subnet.Registry, got []subnet.Lease) {
	t.Helper()
	list, err := reg.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var desc []string
	for _, l := range list.Leases {
		desc = append(desc, fmt.Sprintf("%s (%s, rev %d)", l.Key(), nodeIP4or6(l), l.Revision))
	}
	byV4, byV6 := map[netip.Prefix]string{}, map[netip.Prefix]string{}
	byKey := map[string]subnet.Lease{}
	for _, l := range list.Leases {
		byKey[l.Key()] = l
		if o, dup := byV4[l.Subnet]; dup && l.Subnet.IsValid() {
			t.Errorf("IPv4 subnet %s is held by %s and by %s", l.Subnet, o, l.Key())
		}
		if o, dup := byV6[l.IPv6Subnet]; dup && l.IPv6Subnet.IsValid() {
			t.Errorf("IPv6 subnet %s is held by %s and by %s", l.IPv6Subnet, o, l.Key())
		}
		byV4[l.Subnet], byV6[l.IPv6Subnet] = l.Key(), l.Key()
	}
	for i, l := range got {
		if l.IsZero() {
			continue // reported by raceRound
		}
		if s, ok := byKey[l.Key()]; !ok || s.Attrs.PublicIP != raceAttrs(i).PublicIP {
			t.Errorf("manager %d holds %s, which the store does not give to %s", i, l.Key(), nodeIP(i))
		}
	}
	if t.Failed() {
		t.Logf("live leases at revision %d:\n  %s", list.Revision, strings.Join(desc, "\n  "))
	}
}

func nodeIP4or6(l subnet.Lease) string {
	if l.Attrs.PublicIP.IsValid() && !l.Attrs.PublicIP.IsUnspecified() {
		return l.Attrs.PublicIP.String()
	}
	return l.Attrs.PublicIPv6.String()
}

// TestDualStackManagersRaceForDistinctSubnets: eight dual-stack nodes with fresh views and
// independent random choices race over a small range (12 subnets per family), so that
// several draw the same subnet of one family in every round.
func TestDualStackManagersRaceForDistinctSubnets(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16","SubnetMin":"10.244.1.0","SubnetMax":"10.244.12.0",
		"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","IPv6SubnetMin":"fd00:10:244:1::","IPv6SubnetMax":"fd00:10:244:c::"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for round := range raceRounds {
		prefix := fmt.Sprintf("/weft-race/fresh/%d", round)
		conns := []*etcdv3.Registry{raceRegistry(t, srv, prefix), raceRegistry(t, srv, prefix)}
		var lost atomic.Int64
		racers := make([]*racer, raceManagers)
		for i := range racers {
			racers[i] = &racer{Registry: conns[i%len(conns)], lost: &lost}
		}
		got := raceRound(t, ctx, cfg, racers, func(int) *rand.Rand { return nil })
		checkDistinct(t, ctx, conns[0], got)
		t.Logf("round %d: %d managers acquired, %d create races lost", round, raceManagers, lost.Load())
		if t.Failed() {
			t.FailNow()
		}
	}
}

// TestDualStackManagersRaceWithDifferingViews: half of the nodes list the store just before
// a lease of one family was written and the other half just after, and all draw the same
// random numbers. Both halves then choose the same subnet of one family paired with
// different subnets of the other: the first attempt of every round is a collision on
// different keys that only the store's guard can refuse. The hidden lease is an IPv4-only
// reservation written as an operator writes it (no etcd lease), or an IPv6-only lease.
func TestDualStackManagersRaceWithDifferingViews(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	// More than maxCandidates (100) subnets per family: both views draw from 100 candidates,
	// so the same seed gives the same index in both.
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16","SubnetMin":"10.244.1.0","SubnetMax":"10.244.200.0",
		"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","IPv6SubnetMin":"fd00:10:244:1::","IPv6SubnetMax":"fd00:10:244:c8::"}`)
	hidden := []struct {
		name  string
		key   string
		write func(ctx context.Context, reg *etcdv3.Registry) error
	}{
		{"IPv4-only reservation", "10.244.1.0-24", func(ctx context.Context, reg *etcdv3.Registry) error {
			_, err := reg.Client().Put(ctx, reg.Keys().Lease("10.244.1.0-24"), `{"PublicIP":"198.51.100.1","PublicIPv6":null}`)
			return err
		}},
		{"IPv6-only lease", "0.0.0.0-0&fd00:10:244:1::-64", func(ctx context.Context, reg *etcdv3.Registry) error {
			_, err := reg.CreateLease(ctx, netip.Prefix{}, pfx("fd00:10:244:1::/64"),
				subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr("2001:db8:ffff::1"), BackendType: "vxlan"}, time.Hour)
			return err
		}},
	}
	for hi, h := range hidden {
		t.Run(h.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			for round := range raceRounds {
				prefix := fmt.Sprintf("/weft-race/views/%d/%d", hi, round)
				conns := []*etcdv3.Registry{raceRegistry(t, srv, prefix), raceRegistry(t, srv, prefix)}
				if err := h.write(ctx, conns[0]); err != nil {
					t.Fatal(err)
				}
				var lost atomic.Int64
				racers := make([]*racer, raceManagers)
				for i := range racers {
					racers[i] = &racer{Registry: conns[i%len(conns)], lost: &lost}
					if i%2 == 1 {
						racers[i].hide = map[string]bool{h.key: true}
					}
				}
				seed := uint64(round + 1)
				got := raceRound(t, ctx, cfg, racers, func(int) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) })
				checkDistinct(t, ctx, conns[0], got)
				t.Logf("round %d: %d managers acquired besides %s, %d create races lost", round, raceManagers, h.key, lost.Load())
				if t.Failed() {
					t.FailNow()
				}
			}
		})
	}
}
