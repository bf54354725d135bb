package forward_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/fastpathtest"
	"github.com/weftnet/weft/backend/internal/fastpath/forward"
)

// reopenNode is a Forwarder on a fake device whose Reopen hands out fresh fake devices,
// failing the first fail calls.
type reopenNode struct {
	f     *forward.Forwarder
	devs  chan *fastpathtest.Device // each device Reopen returned
	calls atomic.Int32
	done  chan error
}

func startReopenNode(t *testing.T, ctx context.Context, hub *fastpathtest.Hub, fail int32, withReopen bool) (*reopenNode, *fastpathtest.Device) {
	t.Helper()
	dev := fastpathtest.NewDevice(8, 64)
	n := &reopenNode{devs: make(chan *fastpathtest.Device, 8), done: make(chan error, 1)}
	cfg := forward.Config{Subnet: subnetA, MTU: 1472, BatchSize: 8, Log: ktesting.NewLogger(t, ktesting.NewConfig())}
	if withReopen {
		cfg.Reopen = func() (fastpath.Device, error) {
			if n.calls.Add(1) <= fail {
				return nil, errors.New("cannot create the device yet")
			}
			d := fastpathtest.NewDevice(8, 64)
			n.devs <- d
			return d, nil
		}
	}
	f, err := forward.New(cfg, dev, hub.Conn(epA, 8, 64))
	if err != nil {
		t.Fatal(err)
	}
	tab, err := forward.NewPeerTable([]forward.Peer{{Subnet: subnetB, Endpoint: epB}})
	if err != nil {
		t.Fatal(err)
	}
	f.SetPeers(tab)
	n.f = f
	go func() { n.done <- f.Run(ctx) }()
	return n, dev
}

func TestGoneDeviceIsReplaced(t *testing.T) {
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := fastpathtest.NewHub()
	b := hub.Conn(epB, 8, 64)
	defer b.Close()
	a, dev := startReopenNode(t, ctx, hub, 2, true)

	dev.Delete()
	var fresh *fastpathtest.Device
	select {
	case fresh = <-a.devs:
	case <-time.After(5 * time.Second):
		t.Fatal("Reopen was not called within 5s")
	}
	if got := a.calls.Load(); got != 3 {
		t.Errorf("Reopen called %d times, want 3 (two failures, then a device)", got)
	}
	// Both directions use the new device.
	fresh.Inject(ipv4UDP("10.244.1.2", "10.244.2.3", 64, []byte("out")))
	pkts := []fastpath.Packet{{Buf: make([]byte, 2048), Off: fastpath.Headroom}}
	if n, err := b.Read(pkts); err != nil || n != 1 || !bytes.Contains(pkts[0].Bytes(), []byte("out")) {
		t.Fatalf("B read %d, %v: % x", n, err, pkts[0].Bytes())
	}
	hub.Send(epB, epA, ipv4UDP("10.244.2.3", "10.244.1.2", 64, []byte("in")))
	if got := receive(t, fresh.Written()); !bytes.Contains(got, []byte("in")) {
		t.Fatalf("the new device got % x", got)
	}
	select {
	case err := <-a.done:
		t.Fatalf("Run returned %v after the device was replaced", err)
	default:
	}
	cancel()
	select {
	case err := <-a.done:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	b.Close()
	waitGoroutines(t, base)
}

func TestGoneDeviceWithoutReopenEndsRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := fastpathtest.NewHub()
	a, dev := startReopenNode(t, ctx, hub, 0, false)
	dev.Delete()
	select {
	case err := <-a.done:
		if !errors.Is(err, fastpath.ErrDeviceGone) {
			t.Fatalf("Run returned %v, want ErrDeviceGone", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end on a gone device")
	}
}

func TestCloseDuringReopenEndsRun(t *testing.T) {
	base := runtime.NumGoroutine()
	hub := fastpathtest.NewHub()
	a, dev := startReopenNode(t, context.Background(), hub, 1<<30, true)
	dev.Delete()
	deadline := time.Now().Add(5 * time.Second)
	for a.calls.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := a.f.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil after Close", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close while reopening")
	}
	waitGoroutines(t, base)
}
