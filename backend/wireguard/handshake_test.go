//go:build linux

package wireguard

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/tundev/tundevtest"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/nstest"
)

// rekeyTimeout is WireGuard's REKEY_TIMEOUT: a handshake initiation that gets no answer
// is sent again only after it (plus up to 333 ms of jitter).
const rekeyTimeout = 5 * time.Second

// startedNode is a backend run by startTogether, without the testing.T of tundevtest's
// StartNode, so that two can start in parallel goroutines.
type startedNode struct {
	nw     backend.Network
	cancel context.CancelFunc
	done   chan error
}

// startNode prepares, activates, runs and gives peers to n's backend, returning what
// failed instead of failing the test.
func (n *wgNode) startNode(t *testing.T, peers ...subnet.Lease) (*startedNode, error) {
	cfg, err := subnet.ParseConfig([]byte(`{"Network":"10.244.0.0/16","Backend":` + n.json + `}`))
	if err != nil {
		return nil, err
	}
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(5)))
	be, err := newBackend(backend.Env{Ext: n.ext, Network: cfg, Log: logger.WithValues("node", n.addr)}, n.keyFile)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &startedNode{cancel: cancel, done: make(chan error, 1)}
	own := subnet.Lease{Subnet: netip.MustParsePrefix(n.own), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(n.addr)}}
	if err := nsutil.Do(n.ns, func() error {
		if _, err := be.Prepare(ctx); err != nil {
			return err
		}
		s.nw, err = be.Activate(ctx, own)
		return err
	}); err != nil {
		cancel()
		return nil, err
	}
	go func() { s.done <- s.nw.Run(ctx) }()
	events := make([]subnet.Event, 0, len(peers))
	for _, p := range peers {
		events = append(events, subnet.Event{Type: subnet.Added, Lease: p})
	}
	if err := s.nw.Apply(ctx, events); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *startedNode) stop() error {
	s.cancel()
	var err error
	select {
	case err = <-s.done:
	case <-time.After(10 * time.Second):
		err = errors.New("Run did not return within 10 s of cancel")
	}
	return errors.Join(err, s.nw.Close())
}

// TestHandshakeWhenStartedTogether: two userspace nodes that start at the same moment,
// each told of the other at once, carry the first ping without a handshake
// retransmission, that is within one REKEY_TIMEOUT. Before userEngine.kick broke the tie,
// both initiated at once, the initiations crossed and 2 of 10 rounds waited 5 s.
// Pod A pings from the start, so node A's own packets also make it initiate. Repeated,
// because the order in which the two come up varies.
func TestHandshakeWhenStartedTogether(t *testing.T) {
	skipWithoutNamespaces(t)
	const rounds = 10
	for round := range rounds {
		t.Run(fmt.Sprint("round ", round), func(t *testing.T) {
			c := tundevtest.NewCluster(t)
			a := newWGNode(t, c.NodeA, "192.0.2.1", "10.244.1.0/24", `{"Type":"wireguard","Implementation":"userspace"}`)
			b := newWGNode(t, c.NodeB, "192.0.2.2", "10.244.2.0/24", `{"Type":"wireguard","Implementation":"userspace"}`)
			a.ext = tundevtest.External(t, a.ns, a.addr)
			b.ext = tundevtest.External(t, b.ns, b.addr)
			nodes := []*wgNode{a, b}
			peers := []subnet.Lease{b.lease(t), a.lease(t)}
			started := make([]*startedNode, 2)
			errs := make([]error, 2)
			var wg sync.WaitGroup
			gate := make(chan struct{})
			start := time.Now()
			for i := range nodes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-gate
					started[i], errs[i] = nodes[i].startNode(t, peers[i])
				}()
			}
			close(gate)
			wg.Wait()
			for i, s := range started {
				if s != nil {
					t.Cleanup(func() {
						if err := s.stop(); err != nil {
							t.Errorf("node %d: %v", i, err)
						}
					})
				}
			}
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			up := time.Since(start)
			// Pings of 200 ms every 10 ms, for at most one REKEY_TIMEOUT from the start.
			for {
				_, err := nstest.Run(c.PodA, "ping", "-n", "-c", "1", "-W", "0.2", "10.244.2.2")
				took := time.Since(start)
				if err == nil && took < rekeyTimeout {
					t.Logf("both nodes running after %v; first ping answered after %v", up.Round(time.Millisecond), took.Round(time.Millisecond))
					return
				}
				if took >= rekeyTimeout {
					for i, s := range started {
						if e, ok := s.nw.(*wgNetwork).eng.(*userEngine); ok {
							st, _ := e.dev.IpcGet()
							t.Logf("node %d peers: %s", i, st)
						}
					}
					t.Fatalf("pod A reaches pod B only after %v (answered: %v): the first handshake was lost and WireGuard had to retransmit", took.Round(time.Millisecond), err == nil)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
