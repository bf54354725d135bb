package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/pkg/health"
	"github.com/weftnet/weft/pkg/status"
)

// readiness is weftd's /readyz answer: the HTTP code and, when it could be decoded, the
// readiness facts.
type readiness struct {
	Code int `json:"code"` // 200 ready, 503 not ready, 0 when /readyz could not be fetched
	health.Snapshot
	Error string `json:"error,omitempty"` // why /readyz could not be fetched or decoded
}

// statusResult is status' JSON output.
type statusResult struct {
	Node   string        `json:"node"` // the HOST:PORT asked
	Status status.Status `json:"status"`
	Ready  readiness     `json:"ready"`
}

func runStatus(ctx context.Context, c *cli, _ []string) error {
	if c.opts.node == "" {
		return usagef("status needs --node HOST:PORT (the address of weftd's --healthz-ip/--healthz-port)")
	}
	host, port, err := net.SplitHostPort(c.opts.node)
	if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
		return usagef("invalid value %q for --node: want HOST:PORT, e.g. 192.0.2.1:8471", c.opts.node)
	}
	// Straight to the node: an HTTP proxy from the environment has no business here.
	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	st, err := status.Fetch(ctx, client, c.opts.node)
	if err != nil {
		var he *status.HTTPError
		if errors.As(err, &he) && he.Code == http.StatusNotFound {
			return fmt.Errorf("%w (this weftd does not serve %s; is it older than weftctl?)", err, status.Path)
		}
		return err
	}
	res := statusResult{Node: c.opts.node, Status: st, Ready: fetchReady(ctx, client, c.opts.node)}
	if c.opts.output == outputJSON {
		return c.writeJSON(res)
	}
	return c.printStatus(res)
}

// fetchReady asks /readyz for its JSON form; failures are reported in the result.
func fetchReady(ctx context.Context, client *http.Client, addr string) readiness {
	url := "http://" + addr + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return readiness{Error: err.Error()}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return readiness{Error: err.Error()}
	}
	defer resp.Body.Close()
	r := readiness{Code: resp.StatusCode}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		r.Error = fmt.Sprintf("GET %s: reading the body: %v", url, err)
		return r
	}
	if err := json.Unmarshal(body, &r.Snapshot); err != nil {
		r.Ready = resp.StatusCode == http.StatusOK
		r.Error = fmt.Sprintf("GET %s: %d, body not JSON: %q", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return r
}

func (c *cli) printStatus(res statusResult) error {
	st := res.Status
	now := st.Time
	if now.IsZero() {
		now = c.clock()
	}
	tw := c.table()
	node := strings.Join(strings.Fields(strings.Join([]string{st.Node.Hostname, st.Node.Interface,
		addrText(st.Node.InterfaceIP), addrText(st.Node.InterfaceIPv6)}, " ")), " ")
	public := "public IP " + dash(addrText(st.Node.PublicIP))
	if st.Node.PublicIPv6.IsValid() {
		if st.Node.PublicIP.IsValid() {
			public += ", public IPv6 " + st.Node.PublicIPv6.String()
		} else {
			public = "public IPv6 " + st.Node.PublicIPv6.String()
		}
	}
	fmt.Fprintf(tw, "Node:\t%s, %s\n", dash(node), public)
	weftd := dash(st.Version)
	if !st.Started.IsZero() {
		weftd += ", up " + now.Sub(st.Started).Round(time.Second).String()
	}
	fmt.Fprintf(tw, "weftd:\t%s\n", weftd)
	fmt.Fprintf(tw, "Ready:\t%s\n", readyText(res.Ready))
	if st.Lease.Network.IsValid() {
		fmt.Fprintf(tw, "Network:\t%s\n", st.Lease.Network)
	}
	if st.Lease.IPv6Network.IsValid() {
		fmt.Fprintf(tw, "IPv6 network:\t%s\n", st.Lease.IPv6Network)
	}
	fmt.Fprintf(tw, "Lease:\t%s\n", leaseText(st.Lease, now))
	fmt.Fprintf(tw, "Backend:\t%s\n", backendText(st.Backend))
	for _, w := range st.ConfigWarnings {
		fmt.Fprintf(tw, "Config warning:\t%s\n", w)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	peers := slices.Clone(st.Peers)
	slices.SortFunc(peers, func(a, b status.Peer) int { return compareSubnets(a.Subnet, a.IPv6Subnet, b.Subnet, b.IPv6Subnet) })
	fmt.Fprintf(c.stdout, "\nPeers (%d):\n", len(peers))
	if len(peers) > 0 {
		// The IPv6 columns appear when a peer has an IPv6 side.
		v6 := slices.ContainsFunc(peers, func(p status.Peer) bool { return p.IPv6Subnet.IsValid() || p.PublicIPv6.IsValid() })
		tw = c.table()
		if v6 {
			fmt.Fprintln(tw, "SUBNET\tIPV6-SUBNET\tPUBLIC-IP\tPUBLIC-IPV6\tBACKEND\tSTATE")
		} else {
			fmt.Fprintln(tw, "SUBNET\tPUBLIC-IP\tBACKEND\tSTATE")
		}
		for _, p := range peers {
			if v6 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", dash(addrText(p.Subnet)), dash(addrText(p.IPv6Subnet)),
					dash(addrText(p.PublicIP)), dash(addrText(p.PublicIPv6)), dash(p.BackendType), oneLine(p.StateText()))
			} else {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", dash(addrText(p.Subnet)), dash(addrText(p.PublicIP)), dash(p.BackendType), oneLine(p.StateText()))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(st.Counters) > 0 {
		fmt.Fprintln(c.stdout, "\nCounters:")
		tw = c.table()
		for _, name := range slices.Sorted(maps.Keys(st.Counters)) {
			fmt.Fprintf(tw, "  %s\t%d\n", name, st.Counters[name])
		}
		return tw.Flush()
	}
	return nil
}

func readyText(r readiness) string {
	switch {
	case r.Code == 0:
		return "unknown: " + oneLine(r.Error)
	case r.Ready:
		return "yes"
	}
	var parts []string
	if len(r.Missing) > 0 {
		parts = append(parts, "missing "+strings.Join(r.Missing, ", "))
	}
	if r.LastError != "" {
		parts = append(parts, "last error: "+oneLine(r.LastError))
	}
	if len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("/readyz answered %d", r.Code))
	}
	return "no (" + strings.Join(parts, "; ") + ")"
}

func leaseText(l status.Lease, now time.Time) string {
	s := subnetsText(l.Subnet, l.IPv6Subnet)
	if s == "" {
		return "none held"
	}
	switch {
	case l.Reserved:
		s += ", reserved (no expiry)"
	case !l.Expires.IsZero():
		s += ", expires in " + humanDuration(l.Expires.Sub(now))
	}
	if !l.Renewed.IsZero() {
		s += ", renewed " + now.Sub(l.Renewed).Round(time.Second).String() + " ago"
	}
	return s
}

func backendText(b status.Backend) string {
	if b.Type == "" {
		return "none"
	}
	parts := []string{b.Type}
	if b.Device != "" {
		parts = append(parts, "device "+b.Device)
	}
	if b.MTU != 0 {
		parts = append(parts, "MTU "+strconv.Itoa(b.MTU))
	}
	if b.Active {
		parts = append(parts, "active")
	} else {
		parts = append(parts, "not active")
	}
	for _, k := range slices.Sorted(maps.Keys(b.Info)) {
		parts = append(parts, k+" "+b.Info[k])
	}
	return strings.Join(parts, ", ")
}

// optional is a netip.Addr or netip.Prefix, whose zero value prints as "invalid ...".
type optional interface {
	IsValid() bool
	String() string
}

// addrText prints an address or prefix, or "" for the zero value.
func addrText[T optional](v T) string {
	if !v.IsValid() {
		return ""
	}
	return v.String()
}
