package fastpath

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func TestICMPErrorAllowed(t *testing.T) {
	icmpMsg := func(typ byte) pkt {
		return pkt{src: "10.244.1.2", dst: "10.244.9.9", ttl: 64, proto: protoICMP, payload: []byte{typ, 0, 0, 0, 0, 0, 0, 0}}
	}
	tests := []struct {
		name string
		p    pkt
		want bool
	}{
		{"udp", udp("10.244.1.2", "10.244.9.9", 64, "x"), true},
		{"icmp echo request", icmpMsg(8), true},
		{"icmp echo reply", icmpMsg(0), true},
		{"icmp unreachable", icmpMsg(3), false},
		{"icmp time exceeded", icmpMsg(11), false},
		{"icmp redirect", icmpMsg(5), false},
		{"icmp parameter problem", icmpMsg(12), false},
		{"icmp without header", pkt{src: "10.244.1.2", dst: "10.244.9.9", ttl: 64, proto: protoICMP}, false},
		{"first fragment", func() pkt { p := udp("10.244.1.2", "10.244.9.9", 64, "x"); p.frag = 0x2000; return p }(), true},
		{"later fragment", func() pkt { p := udp("10.244.1.2", "10.244.9.9", 64, "x"); p.frag = 0x0010; return p }(), false},
		{"source unspecified", udp("0.0.0.0", "10.244.9.9", 64, "x"), false},
		{"source loopback", udp("127.0.0.1", "10.244.9.9", 64, "x"), false},
		{"source multicast", udp("224.0.0.5", "10.244.9.9", 64, "x"), false},
		{"source broadcast", udp("255.255.255.255", "10.244.9.9", 64, "x"), false},
		{"destination multicast", udp("10.244.1.2", "239.1.2.3", 64, "x"), false},
		{"destination broadcast", udp("10.244.1.2", "255.255.255.255", 64, "x"), false},
	}
	for _, tt := range tests {
		b := tt.p.build()
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
	if !headerValid(msg) {
		t.Fatal("ICMP error header checksum wrong")
	}
	if h.proto != protoICMP || h.hlen != 20 || h.src != addr4(src) || h.dst != addr4(dst) || h.ttl != icmpTTL || h.fragOff != 0 {
		t.Fatalf("ICMP error header wrong: %+v", h)
	}
	m := msg[20:]
	if refChecksum(m) != 0 {
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
		orig := udp("10.244.1.2", "10.244.9.9", 64, strings.Repeat("a", size)).build()
		h, _ := parseIPv4(orig)
		out := bytes.Repeat([]byte{0xee}, icmpMaxLen) // dirty buffer: every byte must be written
		n := buildICMPError(out, orig, h, addr4("10.244.1.0"), icmpDestUnreachable, icmpNetUnreachable)
		checkICMPError(t, out[:n], orig, "10.244.1.0", "10.244.1.2", icmpDestUnreachable, icmpNetUnreachable)
	}
	orig := pkt{src: "10.244.2.7", dst: "10.244.1.5", ttl: 1, proto: 6, options: 12, payload: []byte("0123456789abcdef")}.build()
	h, _ := parseIPv4(orig)
	out := make([]byte, icmpMaxLen)
	n := buildICMPError(out, orig, h, addr4("10.244.1.0"), icmpTimeExceeded, icmpTTLExceeded)
	checkICMPError(t, out[:n], orig, "10.244.1.0", "10.244.2.7", icmpTimeExceeded, icmpTTLExceeded)
}
