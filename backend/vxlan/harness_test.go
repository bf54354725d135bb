package vxlan

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/nstest"
)

// testNode is one node namespace running the backend.
type testNode struct {
	kerneltest.Node
	subnet  netip.Prefix
	subnet6 netip.Prefix // zero unless the node runs IPv6
	addr6   netip.Addr   // IPv6 underlay address; zero unless the node runs IPv6
	be      *Backend
	attrs   subnet.LeaseAttrs
	nw      *network
	repairs *kerneltest.Repairs // what the network reported through OnRepair
}

func (n *testNode) lease() subnet.Lease {
	return subnet.Lease{Subnet: n.subnet, IPv6Subnet: n.subnet6, Attrs: n.attrs}
}

func added(ls ...subnet.Lease) []subnet.Event {
	var evs []subnet.Event
	for _, l := range ls {
		evs = append(evs, subnet.Event{Type: subnet.Added, Lease: l})
	}
	return evs
}

func removed(ls ...subnet.Lease) []subnet.Event {
	var evs []subnet.Event
	for _, l := range ls {
		evs = append(evs, subnet.Event{Type: subnet.Removed, Lease: subnet.Lease{Subnet: l.Subnet, IPv6Subnet: l.IPv6Subnet}})
	}
	return evs
}

// newBackend builds the backend inside the node's namespace with the given Backend keys.
func newBackend(t *testing.T, kn kerneltest.Node, keys map[string]any) *Backend {
	t.Helper()
	return newBackendWith(t, kn, keys, nil)
}

// newBackendWith is newBackend with the Env changed by edit (nil: the IPv4 defaults).
func newBackendWith(t *testing.T, kn kerneltest.Node, keys map[string]any, edit func(*backend.Env)) *Backend {
	t.Helper()
	raw, err := json.Marshal(keys)
	if err != nil {
		t.Fatal(err)
	}
	var be backend.Backend
	err = nsutil.Do(kn.NS, func() error {
		ifc, err := net.InterfaceByName(kn.Iface)
		if err != nil {
			return err
		}
		env := backend.Env{
			Ext: backend.ExternalInterface{Iface: ifc, IfaceAddr: kn.Addr, PublicIP: kn.Addr},
			Network: &subnet.Config{
				Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24,
				BackendType: Name, Backend: raw,
			},
			Log: testr.New(t),
		}
		if edit != nil {
			edit(&env)
		}
		be, err = New(env)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	b := be.(*Backend)
	t.Cleanup(func() { b.Close() })
	return b
}

// startNode runs New, Prepare and Activate for kn with subnet sn. Only New runs inside the
// namespace: the rest must work from any thread.
func startNode(t *testing.T, kn kerneltest.Node, sn string, keys map[string]any) *testNode {
	t.Helper()
	n := &testNode{Node: kn, subnet: netip.MustParsePrefix(sn), be: newBackend(t, kn, keys), repairs: &kerneltest.Repairs{}}
	n.be.env.OnRepair = n.repairs.Report
	var err error
	ctx := context.Background()
	if n.attrs, err = n.be.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	nw, err := n.be.Activate(ctx, n.lease())
	if err != nil {
		t.Fatal(err)
	}
	n.nw = nw.(*network)
	t.Cleanup(func() { n.nw.Close() })
	return n
}

// runInBackground starts Run with a short resync and stops it when the test ends.
func runInBackground(t *testing.T, nw *network, every time.Duration) {
	nw.resync = every
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := nw.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// connect gives each node the other as a peer.
func connect(t *testing.T, a, b *testNode) {
	t.Helper()
	if err := a.nw.Apply(context.Background(), added(b.lease())); err != nil {
		t.Fatal(err)
	}
	if err := b.nw.Apply(context.Background(), added(a.lease())); err != nil {
		t.Fatal(err)
	}
}

// ping sends a few pings from ns to dst and fails the test if none come back.
func ping(t *testing.T, ns string, dst netip.Addr) {
	t.Helper()
	if _, err := nstest.Run(ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", dst.String()); err != nil {
		t.Fatalf("ping %s from %s: %v", dst, ns, err)
	}
}

// eventually retries check until it returns nil, for at most d.
func eventually(t *testing.T, d time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tcpTransfer sends size bytes over TCP from namespace from to dst in namespace to
// (cluster.TCPTransfer: count and SHA-256 checked at the receiver).
func tcpTransfer(t *testing.T, from, to string, dst netip.Addr, size int) {
	t.Helper()
	if err := cluster.TCPTransfer(&cluster.Pod{NS: from}, &cluster.Pod{NS: to, IP: dst}, size, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}
