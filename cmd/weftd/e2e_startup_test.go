package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/cluster"
)

// TestStartupLatency measures, on a 3-node vxlan cluster, how soon a starting weftd writes
// its subnet file and how soon its pod answers the pods of the two other nodes, both from
// the moment weftd is started. Each round, node 2 is taken down as a node that left: weftd
// stopped, its lease deleted (the others remove its routes and firewall rule), flannel.1
// deleted; its subnet file stays, so it takes the same subnet back and its pod keeps its
// address. Probes are UDP datagrams every 2 ms from a socket in each other pod to an echo
// socket in node 2's pod; a round trip proves both directions. It asserts correctness only
// (the file is rewritten, the pod answers) and logs the timings and their spread:
//
//	go test -run TestStartupLatency -v ./cmd/weftd
//
// WEFT_STARTUP_ROUNDS=n sets the number of rounds (default 10); WEFT_STARTUP_DIR=dir keeps
// the cluster's logs there (an empty directory); WEFT_STARTUP_WEFTD=path runs that weftd
// binary instead of building one.
func TestStartupLatency(t *testing.T) {
	rounds := 10
	if s := os.Getenv("WEFT_STARTUP_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("WEFT_STARTUP_ROUNDS=%q", s)
		}
		rounds = n
	}
	c := cluster.New(t, cluster.Options{Nodes: 3, Dir: os.Getenv("WEFT_STARTUP_DIR"), WeftdPath: os.Getenv("WEFT_STARTUP_WEFTD")})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`)
	ds, pods, envs := startNodes(t, c, []int{0, 1, 2})
	pingAll(t, pods, 10*time.Second)
	echo := udpEcho(t, pods[2])
	probers := []*udpProber{newProber(t, pods[0], echo), newProber(t, pods[1], echo)}
	for _, p := range probers {
		if _, err := p.reach(time.Now(), 5*time.Second); err != nil {
			t.Fatalf("before the rounds: %v", err)
		}
	}

	file := c.SubnetFile(2)
	key := leaseKey(envs[2])
	var subnetT, reachT []time.Duration
	for round := range rounds {
		if err := ds[2].Stop(); err != nil {
			t.Fatal(err)
		}
		etcdDelete(t, c, key)
		if _, err := c.Exec(c.NodeNS(2), "ip", "link", "del", "flannel.1"); err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{0, 1} {
			eventually(t, 10*time.Second, fmt.Sprintf("node %d drops node 2's route", n), func() error {
				if r := routeTo(t, c, n, envs[2].Subnet.Masked().String()); r != "" {
					return fmt.Errorf("route still there: %s", r)
				}
				return nil
			})
		}
		time.Sleep(300 * time.Millisecond) // the others' firewall passes after the leave
		before, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}

		start := time.Now()
		if err := ds[2].Start(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var fileAt time.Duration
		var fileErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			fileAt, fileErr = waitRewritten(file, before, start, 10*time.Second)
		}()
		reach := make([]time.Duration, len(probers))
		errs := make([]error, len(probers))
		for i, p := range probers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				reach[i], errs[i] = p.reach(start, 10*time.Second)
			}()
		}
		wg.Wait()
		if fileErr != nil {
			t.Fatalf("round %d: %v", round, fileErr)
		}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: pod on node %d: %v", round, i, err)
			}
		}
		all := slices.Max(reach)
		subnetT, reachT = append(subnetT, fileAt), append(reachT, all)
		t.Logf("round %d (started %s): subnet file after %v, reachable from both other pods after %v (%v, %v)",
			round, start.Format("15:04:05.000000"), fileAt.Round(100*time.Microsecond), all.Round(100*time.Microsecond),
			reach[0].Round(100*time.Microsecond), reach[1].Round(100*time.Microsecond))
	}
	t.Logf("subnet file: %s", spread(subnetT))
	t.Logf("reachable:   %s", spread(reachT))
}

// spread summarises durations: min, median, 90th percentile, max.
func spread(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		return s[min(len(s)-1, int(q*float64(len(s))))].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("n=%d min %v median %v p90 %v max %v", len(s), s[0].Round(100*time.Microsecond), at(0.5), at(0.9), s[len(s)-1].Round(100*time.Microsecond))
}

// waitRewritten polls path every millisecond until it is not the file before (weftd
// writes it anew: a new inode or modification time) and returns the time since start.
func waitRewritten(path string, before os.FileInfo, start time.Time, limit time.Duration) (time.Duration, error) {
	for {
		if fi, err := os.Stat(path); err == nil && (!os.SameFile(fi, before) || !fi.ModTime().Equal(before.ModTime())) {
			return time.Since(start), nil
		}
		if time.Since(start) > limit {
			return 0, fmt.Errorf("%s not rewritten within %v", path, limit)
		}
		time.Sleep(time.Millisecond)
	}
}

const echoPort = 9977

// udpEcho starts a UDP echo socket in the pod's namespace; it closes when the test ends.
func udpEcho(t *testing.T, p *cluster.Pod) netip.AddrPort {
	t.Helper()
	var conn net.PacketConn
	if err := nsutil.Do(p.NS, func() (err error) {
		conn, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", echoPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = conn.WriteTo(buf[:n], from)
		}
	}()
	return netip.AddrPortFrom(p.IP, echoPort)
}

// udpProber sends numbered datagrams from a pod to an echo socket.
type udpProber struct {
	conn *net.UDPConn
	dst  *net.UDPAddr
	seq  uint64
}

func newProber(t *testing.T, p *cluster.Pod, dst netip.AddrPort) *udpProber {
	t.Helper()
	var conn *net.UDPConn
	if err := nsutil.Do(p.NS, func() (err error) {
		conn, err = net.ListenUDP("udp4", nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &udpProber{conn: conn, dst: net.UDPAddrFromAddrPort(dst)}
}

// reach probes every 2 ms until an answer to a probe of this call arrives and returns when
// it arrived, since start.
func (p *udpProber) reach(start time.Time, limit time.Duration) (time.Duration, error) {
	first := p.seq + 1
	buf := make([]byte, 64)
	for time.Since(start) < limit {
		p.seq++
		msg := binary.BigEndian.AppendUint64(nil, p.seq)
		if _, err := p.conn.WriteToUDP(msg, p.dst); err != nil {
			time.Sleep(2 * time.Millisecond) // no route yet, or an ICMP error reported back
			continue
		}
		deadline := time.Now().Add(2 * time.Millisecond)
		for {
			_ = p.conn.SetReadDeadline(deadline)
			n, err := p.conn.Read(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					break
				}
				time.Sleep(time.Until(deadline)) // an ICMP error: wait out the interval
				break
			}
			if n == 8 && binary.BigEndian.Uint64(buf) >= first {
				return time.Since(start), nil
			}
		}
	}
	return 0, fmt.Errorf("no echo from %s within %v", p.dst, limit)
}
