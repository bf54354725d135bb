package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/weftnet/weft/pkg/nsutil"
)

// probeInterval is the echo request interval of a reachability probe: the resolution of
// the convergence figures that use one.
const probeInterval = 2 * time.Millisecond

// echoProbe is an in-process ping: a raw ICMP socket opened inside a namespace, sending
// echo requests with its own identifier and timing the first matching reply. The bench
// opens it before the join starts, so no process start-up delay enters the figure.
type echoProbe struct {
	ns   string
	conn *net.IPConn
	id   uint16
}

func openProbe(ns string) (*echoProbe, error) {
	var conn *net.IPConn
	err := nsutil.Do(ns, func() error {
		c, err := net.ListenIP("ip4:icmp", nil)
		conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("icmp socket in %s: %w", ns, err)
	}
	return &echoProbe{ns: ns, conn: conn, id: uint16(rand.Uint32())}, nil
}

// Close closes the socket.
func (p *echoProbe) Close() { _ = p.conn.Close() }

// firstReply sends an echo request to dst every probeInterval until the first echo reply
// from dst arrives, and returns when it was received. Send errors (no route yet) are
// ignored: the probe keeps trying until timeout. Use one call at a time per probe.
func (p *echoProbe) firstReply(ctx context.Context, dst netip.Addr, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	if err := p.conn.SetReadDeadline(deadline); err != nil {
		return time.Time{}, err
	}
	got := make(chan time.Time, 1)
	go func() { // ends at the first reply, the deadline, or when the deadline is pulled in
		buf := make([]byte, 1500)
		for {
			n, from, err := p.conn.ReadFromIP(buf)
			if err != nil {
				close(got)
				return
			}
			at := time.Now()
			src, _ := netip.AddrFromSlice(from.IP.To4())
			if src == dst && isEchoReply(buf[:n], p.id) {
				got <- at
				return
			}
		}
	}()
	stopReader := func() {
		_ = p.conn.SetReadDeadline(time.Now())
		for range got { // drain until the reader has exited
		}
	}
	ticker := time.NewTicker(probeInterval)
	defer ticker.Stop()
	to := &net.IPAddr{IP: dst.AsSlice()}
	for seq := uint16(1); ; seq++ {
		_, _ = p.conn.WriteToIP(echoRequest(p.id, seq), to)
		select {
		case at, ok := <-got:
			if !ok {
				return time.Time{}, fmt.Errorf("no echo reply from %s to %s within %v", dst, p.ns, timeout)
			}
			return at, nil
		case <-ctx.Done():
			stopReader()
			return time.Time{}, ctx.Err()
		case <-ticker.C:
		}
	}
}

// echoRequest is an ICMP echo request with a 16-byte payload. It is pure.
func echoRequest(id, seq uint16) []byte {
	b := make([]byte, 8+16)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], "weft-bench probe")
	binary.BigEndian.PutUint16(b[2:], icmpChecksum(b))
	return b
}

// isEchoReply reports whether b (an ICMP message without IP header) is an echo reply
// carrying identifier id. It is pure.
func isEchoReply(b []byte, id uint16) bool {
	return len(b) >= 8 && b[0] == 0 && b[1] == 0 && binary.BigEndian.Uint16(b[4:]) == id
}

// icmpChecksum is the Internet checksum of b (with its checksum field zero).
func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// joinProbes are one join's echo probes, opened before weftd starts.
type joinProbes struct {
	nodes []*echoProbe // per fixed node; userspace backends only
	pods  []*echoProbe // per fixed pod
}

func (cv *joiner) openProbes() (*joinProbes, error) {
	ps := &joinProbes{}
	if cv.spec.Userspace {
		for i := range fixedNodes {
			p, err := openProbe(cv.c.NodeNS(i))
			if err != nil {
				ps.close()
				return nil, err
			}
			ps.nodes = append(ps.nodes, p)
		}
	}
	for _, pod := range cv.pods {
		p, err := openProbe(pod.NS)
		if err != nil {
			ps.close()
			return nil, err
		}
		ps.pods = append(ps.pods, p)
	}
	return ps, nil
}

func (ps *joinProbes) close() {
	for _, p := range append(ps.nodes, ps.pods...) {
		p.Close()
	}
}
