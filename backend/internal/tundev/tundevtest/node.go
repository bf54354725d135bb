//go:build linux

package tundevtest

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/subnet"
)

// Node is a backend running in a node namespace: prepared and activated there, its
// Network running until Stop (or the end of the test).
type Node struct {
	NS    string
	NW    backend.Network
	Attrs subnet.LeaseAttrs // what Prepare returned

	cancel  context.CancelFunc
	running bool // Run was started: Stop waits for it
	done    chan error
}

// StartNode prepares and activates be inside ns with the own lease, calls beforeRun (if
// not nil) with the Network, runs it and applies peers as added. The test fails if any
// step does; the node is stopped at cleanup.
func StartNode(t *testing.T, ns string, be backend.Backend, own subnet.Lease, beforeRun func(backend.Network), peers ...subnet.Lease) *Node {
	t.Helper()
	n := &Node{NS: ns, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	var err error
	if err := nsutil.Do(ns, func() error {
		if n.Attrs, err = be.Prepare(ctx); err != nil {
			return err
		}
		n.NW, err = be.Activate(ctx, own)
		return err
	}); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(t) })
	if beforeRun != nil {
		beforeRun(n.NW)
	}
	n.running = true
	go func() { n.done <- n.NW.Run(ctx) }()
	events := make([]subnet.Event, 0, len(peers))
	for _, p := range peers {
		events = append(events, subnet.Event{Type: subnet.Added, Lease: p})
	}
	if err := n.NW.Apply(ctx, events); err != nil {
		t.Fatal(err)
	}
	return n
}

// Stop ends Run, which must return nil within 10 s, and closes the Network. Idempotent.
func (n *Node) Stop(t *testing.T) {
	t.Helper()
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	if !n.running {
		if err := n.NW.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		return
	}
	select {
	case err := <-n.done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Run did not return within 10s of cancel")
	}
	if err := n.NW.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// External returns the external interface of node namespace ns: its eth0, with addr as
// the interface and public address.
func External(t *testing.T, ns, addr string) backend.ExternalInterface {
	t.Helper()
	var ext backend.ExternalInterface
	if err := nsutil.Do(ns, func() error {
		iface, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		ext = backend.ExternalInterface{Iface: iface, IfaceAddr: netip.MustParseAddr(addr), PublicIP: netip.MustParseAddr(addr)}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ext
}

// Done is where Run's result arrives once it returns.
func (n *Node) Done() <-chan error { return n.done }
