package kernel

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink/nl"

	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/pkg/nsutil"
)

func openInNS(t *testing.T, ns string) *Handle {
	t.Helper()
	var h *Handle
	if err := nsutil.Do(ns, func() (err error) { h, err = Open(); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// await reads changes until match accepts one, failing after timeout. It returns the
// changes seen before, for the test's log.
func await(t *testing.T, ch <-chan Change, timeout time.Duration, what string, match func(Change) bool) []Change {
	t.Helper()
	var seen []Change
	deadline := time.After(timeout)
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatalf("%s: channel closed; seen %v", what, seen)
			}
			if match(c) {
				return seen
			}
			seen = append(seen, c)
		case <-deadline:
			t.Fatalf("%s: not seen within %s; seen %v", what, timeout, seen)
		}
	}
}

func TestSubscribeSeesChangesInItsNamespace(t *testing.T) {
	a, b := kerneltest.TwoNodes(t)
	h := openInNS(t, a.NS)
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := h.Subscribe(ctx) // from this goroutine's thread, in the root namespace
	if err != nil {
		t.Fatal(err)
	}
	// A change in the other node's namespace is not seen; the ones in a's are.
	kerneltest.MustRun(t, b.NS, "ip", "route", "add", "10.244.9.0/24", "via", "192.0.2.1")
	run := func(argv ...string) { kerneltest.MustRun(t, a.NS, argv...) }
	run("ip", "link", "add", "vx0", "type", "vxlan", "id", "7", "local", "192.0.2.1", "dev", "eth0", "dstport", "8472", "nolearning")
	vx, err := h.Netlink().LinkByName("vx0")
	if err != nil {
		t.Fatal(err)
	}
	idx := vx.Attrs().Index
	steps := []struct {
		argv  string
		match func(Change) bool
	}{
		{"ip link set vx0 up", func(c Change) bool {
			return c.Kind == LinkChange && c.LinkName == "vx0" && c.LinkUp && c.LinkIndex == idx
		}},
		{"ip addr add 10.244.1.0/32 dev vx0", func(c Change) bool {
			return c.Kind == AddrChange && !c.Deleted && c.LinkIndex == idx && c.Prefix == netip.MustParsePrefix("10.244.1.0/32")
		}},
		{"ip route add 10.244.2.0/24 via 10.244.2.0 dev vx0 onlink", func(c Change) bool {
			return c.Kind == RouteChange && !c.Deleted && c.LinkIndex == idx && c.Prefix == netip.MustParsePrefix("10.244.2.0/24") &&
				c.Gateway == netip.MustParseAddr("10.244.2.0") && c.Table == 254
		}},
		{"ip neigh add 10.244.2.0 lladdr 0a:00:00:00:00:02 dev vx0 nud permanent", func(c Change) bool {
			return c.Kind == NeighChange && c.LinkIndex == idx && c.Prefix.Addr() == netip.MustParseAddr("10.244.2.0") && c.MAC.String() == "0a:00:00:00:00:02"
		}},
		{"bridge fdb add 0a:00:00:00:00:02 dev vx0 dst 192.0.2.2 self permanent", func(c Change) bool {
			return c.Kind == FDBChange && c.LinkIndex == idx && c.Prefix.Addr() == netip.MustParseAddr("192.0.2.2") && c.MAC.String() == "0a:00:00:00:00:02"
		}},
		{"bridge fdb del 0a:00:00:00:00:02 dev vx0 dst 192.0.2.2 self", func(c Change) bool { return c.Kind == FDBChange && c.Deleted }},
		{"ip neigh del 10.244.2.0 dev vx0", func(c Change) bool { return c.Kind == NeighChange && c.Deleted }},
		{"ip route del 10.244.2.0/24", func(c Change) bool { return c.Kind == RouteChange && c.Deleted && c.LinkIndex == idx }},
		{"ip addr del 10.244.1.0/32 dev vx0", func(c Change) bool { return c.Kind == AddrChange && c.Deleted }},
		{"ip link del vx0", func(c Change) bool { return c.Kind == LinkChange && c.Deleted && c.LinkName == "vx0" }},
	}
	for i, s := range steps {
		run(strings.Fields(s.argv)...)
		seen := await(t, ch, 5*time.Second, s.argv, s.match)
		for _, c := range seen {
			if c.Kind == Resync || (c.Kind == RouteChange && c.Prefix == netip.MustParsePrefix("10.244.9.0/24")) {
				t.Errorf("step %d: unexpected %v", i, c)
			}
		}
	}
	// The subscription does not depend on the Handle.
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	run("ip", "route", "add", "10.244.3.0/24", "via", "192.0.2.2")
	await(t, ch, 5*time.Second, "route after Close", func(c Change) bool {
		return c.Kind == RouteChange && c.Prefix == netip.MustParsePrefix("10.244.3.0/24")
	})
	if _, err := h.Subscribe(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe on a closed handle = %v, want ErrClosed", err)
	}
	cancel()
	for range ch { // closed soon after cancel
	}
	waitGoroutines(t, base)
}

func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	// Bounded generously: goroutines that end late on a loaded machine are not a leak.
	for deadline := time.Now().Add(15 * time.Second); runtime.NumGoroutine() > base && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

func TestSubscribeReportsOverflow(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	h := openInNS(t, a.NS)
	s, err := h.newSubscription(4096) // the kernel's minimum is a few kB
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.start(ctx)
	// Nobody reads: the channel fills, then the socket overflows.
	var batch strings.Builder
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&batch, "route add 10.%d.%d.0/24 via 192.0.2.2\n", 100+i/250, i%250)
	}
	file := filepath.Join(t.TempDir(), "routes")
	if err := os.WriteFile(file, []byte(batch.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	kerneltest.MustRun(t, a.NS, "ip", "-batch", file)
	await(t, s.out, 10*time.Second, "overflow resync", func(c Change) bool {
		return c.Kind == Resync && errors.Is(c.Err, ErrOverflow)
	})
	// The subscription goes on: once the backlog is read, a new change is seen. On a loaded
	// machine the 4 kB socket can overflow again while the backlog drains; that Resync is
	// then the news (a consumer dumps again), and the next change is tried, a bounded number
	// of times.
	for try := 1; ; try++ {
		drain(s.out, 500*time.Millisecond, 20*time.Second)
		dst := netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", try))
		kerneltest.MustRun(t, a.NS, "ip", "route", "add", dst.String(), "via", "192.0.2.2")
		overflowed := false
		await(t, s.out, 10*time.Second, "route after overflow", func(c Change) bool {
			overflowed = c.Kind == Resync && errors.Is(c.Err, ErrOverflow)
			return overflowed || (c.Kind == RouteChange && c.Prefix == dst)
		})
		if !overflowed {
			return
		}
		if try == 5 {
			t.Fatal("the socket overflowed again on each of 5 tries")
		}
		t.Logf("try %d: overflowed again before the new route was read; trying another", try)
	}
}

// drain reads ch until nothing comes for quiet, or for at most limit.
func drain(ch <-chan Change, quiet, limit time.Duration) {
	end := time.After(limit)
	for {
		select {
		case <-ch:
		case <-time.After(quiet):
			return
		case <-end:
			return
		}
	}
}

func TestSubscribeReopensAfterFailures(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	h := openInNS(t, a.NS)
	s, err := h.newSubscription(0)
	if err != nil {
		t.Fatal(err)
	}
	s.minDelay, s.maxDelay = 10*time.Millisecond, 40*time.Millisecond
	boom := errors.New("boom")
	fails := 3
	var current *nl.NetlinkSocket
	opened := make(chan struct{}, 10)
	s.open = func() (*nl.NetlinkSocket, error) {
		if fails > 0 {
			fails--
			return nil, boom
		}
		sock, err := s.openSocket()
		current = sock
		opened <- struct{}{}
		return sock, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.start(ctx)
	for i := 0; i < 3; i++ {
		await(t, s.out, 5*time.Second, "failure resync", func(c Change) bool { return c.Kind == Resync && errors.Is(c.Err, boom) })
	}
	await(t, s.out, 5*time.Second, "back resync", func(c Change) bool { return c.Kind == Resync && c.Err == nil })
	<-opened
	kerneltest.MustRun(t, a.NS, "ip", "route", "add", "10.244.3.0/24", "via", "192.0.2.2")
	await(t, s.out, 5*time.Second, "route", func(c Change) bool { return c.Kind == RouteChange })
	// The socket breaks under the reader (here: closed behind its back).
	current.Close()
	await(t, s.out, 5*time.Second, "broken resync", func(c Change) bool { return c.Kind == Resync && c.Err != nil })
	await(t, s.out, 5*time.Second, "back resync", func(c Change) bool { return c.Kind == Resync && c.Err == nil })
	<-opened
	kerneltest.MustRun(t, a.NS, "ip", "route", "del", "10.244.3.0/24")
	await(t, s.out, 5*time.Second, "route after re-open", func(c Change) bool { return c.Kind == RouteChange && c.Deleted })
}
