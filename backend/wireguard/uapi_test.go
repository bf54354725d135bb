package wireguard

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestFormatUAPI(t *testing.T) {
	var priv, pub, psk wgtypes.Key
	priv[0], pub[0], psk[0] = 1, 2, 3
	port, ka := 51820, 25*time.Second
	got := formatUAPI(wgtypes.Config{
		PrivateKey: &priv, ListenPort: &port, ReplacePeers: true,
		Peers: []wgtypes.PeerConfig{
			{PublicKey: pub, PresharedKey: &psk, Endpoint: net.UDPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.2:51820")),
				PersistentKeepaliveInterval: &ka, ReplaceAllowedIPs: true,
				AllowedIPs: []net.IPNet{{IP: net.IPv4(10, 244, 2, 0).To4(), Mask: net.CIDRMask(24, 32)}}},
			{PublicKey: psk, Remove: true},
		},
	})
	hex := func(b byte) string { return fmt.Sprintf("%02x", b) + strings.Repeat("00", 31) }
	want := "private_key=" + hex(1) + "\nlisten_port=51820\nreplace_peers=true\n" +
		"public_key=" + hex(2) + "\npreshared_key=" + hex(3) + "\nendpoint=192.0.2.2:51820\npersistent_keepalive_interval=25\n" +
		"replace_allowed_ips=true\nallowed_ip=10.244.2.0/24\n" +
		"public_key=" + hex(3) + "\nremove=true\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestParseUAPIPeers(t *testing.T) {
	text := "private_key=0100000000000000000000000000000000000000000000000000000000000000\nlisten_port=51820\n" +
		"public_key=0200000000000000000000000000000000000000000000000000000000000000\n" +
		"preshared_key=0000000000000000000000000000000000000000000000000000000000000000\nprotocol_version=1\n" +
		"endpoint=192.0.2.2:51820\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\n" +
		"persistent_keepalive_interval=0\nallowed_ip=10.244.2.0/24\nallowed_ip=10.244.9.0/24\n" +
		"public_key=0300000000000000000000000000000000000000000000000000000000000000\nlast_handshake_time_sec=0\n\n"
	peers, err := parseUAPIPeers(text)
	if err != nil || len(peers) != 2 {
		t.Fatalf("%d peers, %v", len(peers), err)
	}
	p := peers[0]
	if p.PublicKey[0] != 2 || p.Endpoint.String() != "192.0.2.2:51820" || len(p.AllowedIPs) != 2 || p.AllowedIPs[1].String() != "10.244.9.0/24" ||
		!p.LastHandshakeTime.Equal(time.Unix(1700000000, 5)) || p.TransmitBytes != 10 || p.ReceiveBytes != 20 || p.ProtocolVersion != 1 {
		t.Fatalf("peer %+v", p)
	}
	if !peers[1].LastHandshakeTime.IsZero() || peers[1].Endpoint != nil {
		t.Fatalf("peer without handshake: %+v", peers[1])
	}
	if _, err := parseUAPIPeers("public_key=zz\n"); err == nil {
		t.Fatal("a bad key was accepted")
	}
}
