package packet

import (
	"bytes"
	"strings"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
)

func TestICMPErrorAllowed(t *testing.T) {
	icmpMsg := func(typ byte) packettest.IPv4 {
		return packettest.IPv4{Src: "10.244.1.2", Dst: "10.244.9.9", TTL: 64, Proto: protoICMP, Payload: []byte{typ, 0, 0, 0, 0, 0, 0, 0}}
	}
	tests := []struct {
		name string
		p    packettest.IPv4
		want bool
	}{
		{"udp", packettest.UDP("10.244.1.2", "10.244.9.9", 64, "x"), true},
		{"icmp echo request", icmpMsg(8), true},
		{"icmp echo reply", icmpMsg(0), true},
		{"icmp unreachable", icmpMsg(3), false},
		{"icmp time exceeded", icmpMsg(11), false},
		{"icmp redirect", icmpMsg(5), false},
		{"icmp parameter problem", icmpMsg(12), false},
		{"icmp without header", packettest.IPv4{Src: "10.244.1.2", Dst: "10.244.9.9", TTL: 64, Proto: protoICMP}, false},
		{"first fragment", func() packettest.IPv4 {
			p := packettest.UDP("10.244.1.2", "10.244.9.9", 64, "x")
			p.Frag = 0x2000
			return p
		}(), true},
		{"later fragment", func() packettest.IPv4 {
			p := packettest.UDP("10.244.1.2", "10.244.9.9", 64, "x")
			p.Frag = 0x0010
			return p
		}(), false},
		{"source unspecified", packettest.UDP("0.0.0.0", "10.244.9.9", 64, "x"), false},
		{"source loopback", packettest.UDP("127.0.0.1", "10.244.9.9", 64, "x"), false},
		{"source multicast", packettest.UDP("224.0.0.5", "10.244.9.9", 64, "x"), false},
		{"source broadcast", packettest.UDP("255.255.255.255", "10.244.9.9", 64, "x"), false},
		{"destination multicast", packettest.UDP("10.244.1.2", "239.1.2.3", 64, "x"), false},
		{"destination broadcast", packettest.UDP("10.244.1.2", "255.255.255.255", 64, "x"), false},
	}
	for _, tt := range tests {
		b := tt.p.Build()
		h, r := ParseIPv4(b)
		if r != fastpath.DropNone {
			t.Fatalf("%s: test packet invalid: %v", tt.name, r)
		}
		if got := ICMPErrorAllowed(b, h); got != tt.want {
			t.Errorf("%s: ICMPErrorAllowed = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// checkICMPError verifies an ICMP error independently of BuildICMPError's code.
func checkICMPError(t *testing.T, msg, orig []byte, src, dst string, typ, code uint8) {
	t.Helper()
	if err := packettest.CheckICMPError(msg, orig, src, dst, typ, code); err != nil {
		t.Fatal(err)
	}
}

func TestBuildICMPError(t *testing.T) {
	for _, size := range []int{0, 1, 7, 8, 100, 548 - 28, 548 - 27, 1400} {
		orig := packettest.UDP("10.244.1.2", "10.244.9.9", 64, strings.Repeat("a", size)).Build()
		h, _ := ParseIPv4(orig)
		out := bytes.Repeat([]byte{0xee}, ICMPMaxLen) // dirty buffer: every byte must be written
		n := BuildICMPError(out, orig, h, packettest.Addr4("10.244.1.0"), ICMPDestUnreachable, ICMPNetUnreachable)
		checkICMPError(t, out[:n], orig, "10.244.1.0", "10.244.1.2", ICMPDestUnreachable, ICMPNetUnreachable)
	}
	orig := packettest.IPv4{Src: "10.244.2.7", Dst: "10.244.1.5", TTL: 1, Proto: 6, Options: 12, Payload: []byte("0123456789abcdef")}.Build()
	h, _ := ParseIPv4(orig)
	out := make([]byte, ICMPMaxLen)
	n := BuildICMPError(out, orig, h, packettest.Addr4("10.244.1.0"), ICMPTimeExceeded, ICMPTTLExceeded)
	checkICMPError(t, out[:n], orig, "10.244.1.0", "10.244.2.7", ICMPTimeExceeded, ICMPTTLExceeded)
}
