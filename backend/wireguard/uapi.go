package wireguard

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// The userspace device (wireguard-go) is configured with the text of WireGuard's
// cross-platform configuration protocol ("set=1" without the header; keys in hex), and
// read with its "get=1" text. formatUAPI and parseUAPIPeers translate from and to the
// wgtypes the kernel implementation uses, so both implementations share one peer logic.
// See https://www.wireguard.com/xplatform/.

// formatUAPI renders cfg as a set operation. It holds the private key when cfg does:
// never log the result.
func formatUAPI(cfg wgtypes.Config) string {
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k + "=" + v + "\n") }
	if cfg.PrivateKey != nil {
		line("private_key", hex.EncodeToString(cfg.PrivateKey[:]))
	}
	if cfg.ListenPort != nil {
		line("listen_port", strconv.Itoa(*cfg.ListenPort))
	}
	if cfg.ReplacePeers {
		line("replace_peers", "true")
	}
	for _, p := range cfg.Peers {
		line("public_key", hex.EncodeToString(p.PublicKey[:]))
		if p.Remove {
			line("remove", "true")
			continue
		}
		if p.UpdateOnly {
			line("update_only", "true")
		}
		if p.PresharedKey != nil {
			line("preshared_key", hex.EncodeToString(p.PresharedKey[:]))
		}
		if p.Endpoint != nil {
			line("endpoint", p.Endpoint.AddrPort().String())
		}
		if p.PersistentKeepaliveInterval != nil {
			line("persistent_keepalive_interval", strconv.Itoa(int(*p.PersistentKeepaliveInterval/time.Second)))
		}
		if p.ReplaceAllowedIPs {
			line("replace_allowed_ips", "true")
		}
		for _, a := range p.AllowedIPs {
			line("allowed_ip", a.String())
		}
	}
	return b.String()
}

// parseUAPIPeers reads the peers from a get operation's output. Device-level lines (the
// private key among them) are skipped without being kept.
func parseUAPIPeers(text string) ([]wgtypes.Peer, error) {
	var peers []wgtypes.Peer
	var cur *wgtypes.Peer
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue // the blank line that ends the output
		}
		if k == "public_key" {
			key, err := hexKey(v)
			if err != nil {
				return nil, fmt.Errorf("public_key: %w", err)
			}
			peers = append(peers, wgtypes.Peer{PublicKey: key})
			cur = &peers[len(peers)-1]
			continue
		}
		if cur == nil {
			continue // private_key, listen_port, fwmark
		}
		var err error
		switch k {
		case "preshared_key":
			cur.PresharedKey, err = hexKey(v)
		case "endpoint":
			var ap netip.AddrPort
			if ap, err = netip.ParseAddrPort(v); err == nil {
				cur.Endpoint = net.UDPAddrFromAddrPort(ap)
			}
		case "persistent_keepalive_interval":
			var n int
			n, err = strconv.Atoi(v)
			cur.PersistentKeepaliveInterval = time.Duration(n) * time.Second
		case "allowed_ip":
			var p netip.Prefix
			if p, err = netip.ParsePrefix(v); err == nil {
				cur.AllowedIPs = append(cur.AllowedIPs, net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
			}
		case "last_handshake_time_sec":
			var s int64
			if s, err = strconv.ParseInt(v, 10, 64); err == nil && s != 0 {
				cur.LastHandshakeTime = time.Unix(s, 0)
			}
		case "last_handshake_time_nsec": // follows _sec
			var ns int64
			if ns, err = strconv.ParseInt(v, 10, 64); err == nil && !cur.LastHandshakeTime.IsZero() {
				cur.LastHandshakeTime = time.Unix(cur.LastHandshakeTime.Unix(), ns)
			}
		case "rx_bytes":
			cur.ReceiveBytes, err = strconv.ParseInt(v, 10, 64)
		case "tx_bytes":
			cur.TransmitBytes, err = strconv.ParseInt(v, 10, 64)
		case "protocol_version":
			cur.ProtocolVersion, err = strconv.Atoi(v)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
	}
	return peers, sc.Err()
}

func hexKey(s string) (wgtypes.Key, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return wgtypes.Key{}, err
	}
	return wgtypes.NewKey(b)
}
