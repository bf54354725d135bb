package fastpath

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

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
		h, r := parseIPv4(b)
		if r != DropNone {
			t.Fatalf("%s: test packet invalid: %v", tt.name, r)
		}
		if got := icmpErrorAllowed(b, h); got != tt.want {
			t.Errorf("%s: icmpErrorAllowed = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// checkICMPError verifies an ICMP error independently of buildICMPError's code.
func checkICMPError(t *testing.T, msg, orig []byte, src, dst string, typ, code uint8) {
	t.Helper()
	h, r := parseIPv4(msg)
	if r != DropNone || h.total != len(msg) {
		t.Fatalf("ICMP error is not a valid IPv4 packet: %v (total %d, len %d)", r, h.total, len(msg))
	}
	if !packettest.HeaderValid(msg) {
		t.Fatal("ICMP error header checksum wrong")
	}
	if h.proto != protoICMP || h.hlen != 20 || h.src != packettest.Addr4(src) || h.dst != packettest.Addr4(dst) || h.ttl != icmpTTL || h.fragOff != 0 {
		t.Fatalf("ICMP error header wrong: %+v", h)
	}
	m := msg[20:]
	if packettest.RefChecksum(m) != 0 {
		t.Fatal("ICMP checksum wrong")
	}
	if m[0] != typ || m[1] != code || binary.BigEndian.Uint32(m[4:]) != 0 {
		t.Fatalf("ICMP header % x, want type %d code %d", m[:8], typ, code)
	}
	wantQuote := orig
	if len(wantQuote) > icmpMaxLen-28 {
		wantQuote = wantQuote[:icmpMaxLen-28]
	}
	if !bytes.Equal(m[8:], wantQuote) {
		t.Fatalf("quoted packet differs: got %d bytes, want %d", len(m[8:]), len(wantQuote))
	}
	if len(msg) > icmpMaxLen {
		t.Fatalf("ICMP error of %d bytes exceeds %d", len(msg), icmpMaxLen)
	}
}

func TestBuildICMPError(t *testing.T) {
	for _, size := range []int{0, 1, 7, 8, 100, 548 - 28, 548 - 27, 1400} {
		orig := packettest.UDP("10.244.1.2", "10.244.9.9", 64, strings.Repeat("a", size)).Build()
		h, _ := parseIPv4(orig)
		out := bytes.Repeat([]byte{0xee}, icmpMaxLen) // dirty buffer: every byte must be written
		n := buildICMPError(out, orig, h, packettest.Addr4("10.244.1.0"), icmpDestUnreachable, icmpNetUnreachable)
		checkICMPError(t, out[:n], orig, "10.244.1.0", "10.244.1.2", icmpDestUnreachable, icmpNetUnreachable)
	}
	orig := packettest.IPv4{Src: "10.244.2.7", Dst: "10.244.1.5", TTL: 1, Proto: 6, Options: 12, Payload: []byte("0123456789abcdef")}.Build()
	h, _ := parseIPv4(orig)
	out := make([]byte, icmpMaxLen)
	n := buildICMPError(out, orig, h, packettest.Addr4("10.244.1.0"), icmpTimeExceeded, icmpTTLExceeded)
	checkICMPError(t, out[:n], orig, "10.244.1.0", "10.244.2.7", icmpTimeExceeded, icmpTTLExceeded)
}
