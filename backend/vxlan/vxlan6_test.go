package vxlan

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/test/nstest"
)

func TestDualStackPodsTalkAcrossVXLAN(t *testing.T) {
	a, b, pa, pb := twoNodes6(t, true, nil)

	// flannel-v6.1 is flanneld's second device, field by field, beside flannel.1.
	link := kerneltest.MustRun(t, a.NS, "ip", "-d", "link", "show", "flannel-v6.1")
	for _, w := range []string{"mtu 1430", "link/ether " + vtepMAC(underA6, 1).String(),
		"vxlan id 1 local 2001:db8::1 dev eth0", "dstport 8472", "nolearning"} {
		if !strings.Contains(link, w) {
			t.Errorf("flannel-v6.1 lacks %q:\n%s", w, link)
		}
	}
	kerneltest.WaitFor(t, time.Second, "IPv4 entries", peerInPlace(ipv4, a, b))
	kerneltest.WaitFor(t, time.Second, "IPv6 entries", peerInPlace(ipv6, a, b))
	if out := kerneltest.MustRun(t, a.NS, "ip", "-6", "-o", "addr", "show", "dev", "flannel.1", "scope", "global"); strings.TrimSpace(out) != "" {
		t.Errorf("flannel.1 has IPv6 addresses: %s", out)
	}

	// The lease value is flanneld's, byte for byte.
	macA, macA6 := vtepMAC(a.Addr, 1), vtepMAC(underA6, 1)
	got, err := json.Marshal(a.attrs)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"%s"},"BackendV6Data":{"VNI":1,"VtepMAC":"%s"}}`, macA, macA6)
	if string(got) != want {
		t.Errorf("lease value\n got %s\nwant %s", got, want)
	}
	if m := a.nw.MTU(); m != 1430 {
		t.Errorf("MTU() = %d, want 1430 (the smaller of 1450 and 1430)", m)
	}
	d := a.nw.Describe()
	if d.Info["deviceV6"] != "flannel-v6.1" || d.Info["vtepMACv6"] != macA6.String() || len(d.Peers) != 2 {
		t.Errorf("Describe = %+v", d)
	}

	ping(t, pa, podB)
	ping(t, pa, podB6)
	ping(t, pb, podA6)
	ping(t, a.NS, podB6) // host to remote pod, sourced from flannel-v6.1's address
	tcpTransfer(t, pa, pb, podB6, 4<<20)
	if tx := txBytes(t, a.NS, "flannel-v6.1"); tx < 4<<20 {
		t.Fatalf("flannel-v6.1 sent only %d bytes", tx)
	}
	if tx := txBytes(t, a.NS, "flannel.1"); tx >= 4<<20 {
		t.Fatalf("the IPv6 transfer went through flannel.1 (%d bytes)", tx)
	}
}

func TestIPv6OnlyPodsTalkAcrossVXLAN(t *testing.T) {
	a, b, pa, pb := twoNodes6(t, false, nil)
	if _, err := nstest.Run(a.NS, "ip", "link", "show", "flannel.1"); err == nil {
		t.Error("an IPv6-only network made flannel.1")
	}
	kerneltest.WaitFor(t, time.Second, "IPv6 entries", peerInPlace(ipv6, a, b))
	got, err := json.Marshal(a.attrs)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"%s"}}`, vtepMAC(underA6, 1))
	if string(got) != want {
		t.Errorf("lease value\n got %s\nwant %s", got, want)
	}
	if a.attrs.BackendData != nil || a.attrs.PublicIP.IsValid() {
		t.Errorf("IPv6-only attrs have IPv4 data: %+v", a.attrs)
	}
	if err := Type().CheckPeerData(a.attrs); err != nil {
		t.Errorf("CheckPeerData refuses our own IPv6-only lease: %v", err)
	}
	if m := a.nw.MTU(); m != 1430 {
		t.Errorf("MTU() = %d, want 1430", m)
	}
	ping(t, pa, podB6)
	ping(t, pb, podA6)
	tcpTransfer(t, pb, pa, podA6, 1<<20)
}
