package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/cluster"
)

// healthPort is weftd's --healthz-port in the bench's clusters; weftd listens on 127.0.0.1
// inside its own node namespace, so the port is the same on every node.
const healthPort = 10267

// weftdOptions are the bench's weftd flags for node i of c: the cluster's defaults with the
// health port (and so /metrics) open.
func weftdOptions(*cluster.Cluster, int) cluster.WeftdOptions {
	return cluster.WeftdOptions{Omit: []string{"healthz-port"}, Args: []string{"--healthz-port", strconv.Itoa(healthPort)}}
}

// nodeHTTP returns a client whose connections are dialled inside namespace ns.
func nodeHTTP(ns string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = nsutil.Do(ns, func() error {
				var d net.Dialer
				conn, err = d.DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
}

// peersGauge reads weft_peers from weftd's /metrics in namespace ns.
func peersGauge(ctx context.Context, ns string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", healthPort), nil)
	if err != nil {
		return 0, err
	}
	resp, err := nodeHTTP(ns).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	v, ok := gaugeValue(string(body), "weft_peers")
	if !ok {
		return 0, fmt.Errorf("no weft_peers in /metrics of %s", ns)
	}
	return int(v), nil
}

// gaugeValue returns an unlabelled sample's value from Prometheus text. It is pure.
func gaugeValue(text, name string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// routeEvent is one main-table IPv4 route change seen in a namespace.
type routeEvent struct {
	at  time.Time
	add bool
	dst netip.Prefix
}

// routeWatch records every main-table IPv4 route added or deleted in one namespace, from a
// netlink subscription (RTNLGRP_IPV4_ROUTE) opened inside it, with the time the bench
// received each notification.
type routeWatch struct {
	done   chan struct{} // closed by Close: ends the subscription
	closed chan struct{} // closed when the reader has drained the channel

	mu     sync.Mutex // guards events and notify
	events []routeEvent
	notify chan struct{} // closed and replaced on every event
}

func watchRoutes(ns string) (*routeWatch, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", ns, err)
	}
	defer h.Close() // the subscription socket keeps the namespace alive
	w := &routeWatch{done: make(chan struct{}), closed: make(chan struct{}), notify: make(chan struct{})}
	ch := make(chan netlink.RouteUpdate, 1024)
	err = netlink.RouteSubscribeWithOptions(ch, w.done, netlink.RouteSubscribeOptions{
		Namespace:         &h,
		ReceiveBufferSize: 4 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("route subscription in %s: %w", ns, err)
	}
	go func() {
		defer close(w.closed)
		for u := range ch { // closed by netlink when the socket is closed
			at := time.Now()
			if u.Table != unix.RT_TABLE_MAIN || u.Dst == nil || u.Dst.IP.To4() == nil {
				continue
			}
			if u.Type != unix.RTM_NEWROUTE && u.Type != unix.RTM_DELROUTE {
				continue
			}
			addr, _ := netip.AddrFromSlice(u.Dst.IP.To4())
			bits, _ := u.Dst.Mask.Size()
			w.mu.Lock()
			w.events = append(w.events, routeEvent{at: at, add: u.Type == unix.RTM_NEWROUTE, dst: netip.PrefixFrom(addr, bits)})
			close(w.notify)
			w.notify = make(chan struct{})
			w.mu.Unlock()
		}
	}()
	return w, nil
}

// wait returns the time of the first event for dst (an add when add is true, else a
// delete) received after `after`, waiting up to timeout for it.
func (w *routeWatch) wait(ctx context.Context, dst netip.Prefix, add bool, after time.Time, timeout time.Duration) (time.Time, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		for _, e := range w.events {
			if e.dst == dst && e.add == add && !e.at.Before(after) {
				w.mu.Unlock()
				return e.at, nil
			}
		}
		notify := w.notify
		w.mu.Unlock()
		select {
		case <-notify:
		case <-w.closed:
			return time.Time{}, fmt.Errorf("route watch closed")
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-deadline.C:
			what := "deleted"
			if add {
				what = "added"
			}
			return time.Time{}, fmt.Errorf("route %s not %s within %v", dst, what, timeout)
		}
	}
}

// Close ends the subscription and waits (bounded) for the reader.
func (w *routeWatch) Close() {
	select {
	case <-w.done:
		return
	default:
	}
	close(w.done)
	select {
	case <-w.closed:
	case <-time.After(5 * time.Second):
	}
}

// vxlanCounts counts what weftd programmed on flannel.1 in namespace ns: main-table routes
// through the device inside network, its IPv4 neighbours and its FDB entries. A missing
// device counts as zero.
func vxlanCounts(ns string, network netip.Prefix, withNeigh bool) (routes, neighs, fdb int, err error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("netns %s: %w", ns, err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("netlink in %s: %w", ns, err)
	}
	defer nl.Close()
	link, err := nl.LinkByName("flannel.1")
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return 0, 0, 0, nil
		}
		return 0, 0, 0, fmt.Errorf("flannel.1 in %s: %w", ns, err)
	}
	idx := link.Attrs().Index
	rs, err := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: idx, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return 0, 0, 0, fmt.Errorf("routes in %s: %w", ns, err)
	}
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		if a, ok := netip.AddrFromSlice(r.Dst.IP.To4()); ok && network.Contains(a) {
			routes++
		}
	}
	if !withNeigh {
		return routes, 0, 0, nil
	}
	ns4, err := nl.NeighList(idx, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return routes, 0, 0, fmt.Errorf("neighbours in %s: %w", ns, err)
	}
	fdbs, err := nl.NeighList(idx, unix.AF_BRIDGE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return routes, len(ns4), 0, fmt.Errorf("fdb in %s: %w", ns, err)
	}
	return routes, len(ns4), len(fdbs), nil
}
