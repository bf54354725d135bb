package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/pkg/nsutil"
)

// ErrMessageTooLong is wrapped by PingWith's error when ping reported that a packet was too
// big for the path with DF set: "message too long" (local MTU) or "Frag needed" (an ICMP
// from a router).
var ErrMessageTooLong = errors.New("message too long")

// PingOptions adjust PingWith.
type PingOptions struct {
	// Size is the ICMP payload in bytes (ping -s); 0 keeps ping's default of 56.
	Size int
	// DF forbids fragmentation (ping -M do).
	DF bool
	// Interval between echo requests (ping -i); default 200ms.
	Interval time.Duration
}

// PingResult is what ping reported.
type PingResult struct {
	Transmitted, Received int
	// TooLong: ping saw "message too long" or "Frag needed".
	TooLong bool
	// Output is ping's combined output.
	Output string
}

// Ping sends echo requests from p to dst with iputils ping and succeeds when count replies
// arrive within timeout (ping -c count -w timeout).
func (p *Pod) Ping(dst netip.Addr, count int, timeout time.Duration) error {
	_, err := p.PingWith(dst, count, timeout, PingOptions{})
	return err
}

// PingWith is Ping with a payload size and DF. The error is nil when count replies arrived
// within timeout (rounded up to whole seconds); it wraps ErrMessageTooLong when ping reported
// that. A DF ping that is too big keeps trying until timeout, so keep that short.
func (p *Pod) PingWith(dst netip.Addr, count int, timeout time.Duration, o PingOptions) (PingResult, error) {
	if count < 1 {
		count = 1
	}
	secs := int(math.Ceil(timeout.Seconds()))
	if secs < 1 {
		secs = 1
	}
	interval := o.Interval
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	argv := []string{"ping", "-n", "-c", strconv.Itoa(count), "-w", strconv.Itoa(secs),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64)}
	if o.Size > 0 {
		argv = append(argv, "-s", strconv.Itoa(o.Size))
	}
	if o.DF {
		argv = append(argv, "-M", "do")
	}
	argv = append(argv, dst.String())

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second+5*time.Second)
	defer cancel()
	out, err := execIn(ctx, p.NS, argv...)
	res := parsePing(out)
	if err == nil {
		return res, nil
	}
	msg := fmt.Sprintf("ping %s from %s: %d/%d replies (%d wanted) in %ds", dst, p, res.Received, res.Transmitted, count, secs)
	if res.TooLong {
		return res, fmt.Errorf("%s: %w\n%s", msg, ErrMessageTooLong, strings.TrimSpace(out))
	}
	return res, fmt.Errorf("%s: %w\n%s", msg, err, strings.TrimSpace(out))
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

func parsePing(out string) PingResult {
	r := PingResult{Output: out}
	if m := pingSummary.FindStringSubmatch(out); m != nil {
		r.Transmitted, _ = strconv.Atoi(m[1])
		r.Received, _ = strconv.Atoi(m[2])
	}
	lower := strings.ToLower(out)
	r.TooLong = strings.Contains(lower, "message too long") || strings.Contains(lower, "frag needed")
	return r
}

// TCPTransfer sends n pseudo-random bytes over TCP from a socket in from's namespace to a
// listener on to.IP in to's namespace, and checks count and SHA-256 at the receiver. The
// whole exchange is bounded by timeout.
func TCPTransfer(from, to *Pod, n int, timeout time.Duration) error {
	_, err := TCPTransferSource(from, to, n, timeout)
	return err
}

// TCPTransferSource is TCPTransfer that also returns the peer address the receiver saw
// (after any masquerading on the way).
func TCPTransferSource(from, to *Pod, n int, timeout time.Duration) (netip.AddrPort, error) {
	deadline := time.Now().Add(timeout)
	var ln *net.TCPListener
	err := nsutil.Do(to.NS, func() error {
		var err error
		ln, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(to.IP, 0)))
		return err
	})
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("listen on %s: %w", to, err)
	}
	defer ln.Close()
	_ = ln.SetDeadline(deadline)

	type received struct {
		n    int64
		sum  []byte
		peer netip.AddrPort
		err  error
	}
	got := make(chan received, 1)
	go func() {
		conn, err := ln.AcceptTCP()
		if err != nil {
			got <- received{err: fmt.Errorf("accept on %s: %w", to, err)}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(deadline)
		h := sha256.New()
		cnt, err := io.Copy(h, conn)
		got <- received{n: cnt, sum: h.Sum(nil), peer: conn.RemoteAddr().(*net.TCPAddr).AddrPort(), err: err}
	}()

	sent, err := send(from, ln.Addr().(*net.TCPAddr).AddrPort(), n, deadline)
	if err != nil {
		ln.Close() // ends a pending accept
		<-got      // bounded: the accept or the copy ends at the deadline at the latest
		return netip.AddrPort{}, fmt.Errorf("tcp %s -> %s: %w", from, to, err)
	}
	r := <-got
	switch {
	case r.err != nil:
		return r.peer, fmt.Errorf("tcp %s -> %s: receive after %d bytes: %w", from, to, r.n, r.err)
	case r.n != int64(n):
		return r.peer, fmt.Errorf("tcp %s -> %s: received %d bytes, sent %d", from, to, r.n, n)
	case !bytes.Equal(r.sum, sent):
		return r.peer, fmt.Errorf("tcp %s -> %s: SHA-256 mismatch on %d bytes", from, to, n)
	}
	return r.peer, nil
}

// send dials dst from inside from's namespace, writes n pseudo-random bytes, half-closes and
// returns their SHA-256.
func send(from *Pod, dst netip.AddrPort, n int, deadline time.Time) ([]byte, error) {
	var conn net.Conn
	err := nsutil.Do(from.NS, func() error {
		d := net.Dialer{Deadline: deadline}
		if from.IP.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(from.IP, 0))
		}
		var err error
		conn, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(time.Now().UnixNano()))
	src := rand.NewChaCha8(seed)
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for left := n; left > 0; {
		chunk := buf[:min(left, len(buf))]
		_, _ = src.Read(chunk) // never fails
		h.Write(chunk)
		if _, err := conn.Write(chunk); err != nil {
			return nil, fmt.Errorf("write after %d of %d bytes: %w", n-left, n, err)
		}
		left -= len(chunk)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return nil, fmt.Errorf("close write: %w", err)
	}
	return h.Sum(nil), nil
}
