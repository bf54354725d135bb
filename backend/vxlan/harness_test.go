package vxlan

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/subnet"
)

// testNode is one node namespace running the backend.
type testNode struct {
	kerneltest.Node
	subnet  netip.Prefix
	be      *Backend
	attrs   subnet.LeaseAttrs
	nw      *network
	repairs *kerneltest.Repairs // what the network reported through OnRepair
}

func (n *testNode) lease() subnet.Lease { return subnet.Lease{Subnet: n.subnet, Attrs: n.attrs} }

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
		evs = append(evs, subnet.Event{Type: subnet.Removed, Lease: subnet.Lease{Subnet: l.Subnet}})
	}
	return evs
}

// newBackend builds the backend inside the node's namespace with the given Backend keys.
func newBackend(t *testing.T, kn kerneltest.Node, keys map[string]any) *Backend {
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
		be, err = New(backend.Env{
			Ext: backend.ExternalInterface{Iface: ifc, IfaceAddr: kn.Addr, PublicIP: kn.Addr},
			Network: &subnet.Config{
				Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24,
				BackendType: Name, Backend: raw,
			},
			Log: testr.New(t),
		})
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
	if _, err := nsutil.Run(ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", dst.String()); err != nil {
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

// tcpTransfer sends size random bytes over TCP from a socket in cliNS to a listener in
// srvNS on srv, and checks the SHA-256 of what arrived.
func tcpTransfer(t *testing.T, srvNS, cliNS string, srv netip.Addr, size int) {
	t.Helper()
	var ln *net.TCPListener
	if err := nsutil.Do(srvNS, func() error {
		l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(srv, 0)))
		ln = l
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(30 * time.Second)
	_ = ln.SetDeadline(deadline)

	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		h := sha256.New()
		n, err := io.Copy(h, c)
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.n, r.err = n, err
		got <- r
	}()
	var c net.Conn
	if err := nsutil.Do(cliNS, func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err = d.Dial("tcp4", net.JoinHostPort(srv.String(), strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(deadline)
	if _, err := c.Write(data); err != nil {
		c.Close()
		t.Fatal(err)
	}
	c.Close()
	r := <-got
	if r.err != nil {
		t.Fatalf("receive: %v", r.err)
	}
	if r.n != int64(size) || r.sum != want {
		t.Fatalf("received %d bytes with sha256 %x; sent %d with %x", r.n, r.sum, size, want)
	}
}
