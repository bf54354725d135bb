package packet

import (
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
)

// The fuzz targets feed arbitrary bytes to the decoders that see untrusted input. Seeds
// live in testdata/fuzz/<Target>; run one with e.g.
//
//	go test -fuzz=FuzzParseIPv4 -fuzztime=30s ./backend/internal/fastpath/packet/

func FuzzParseIPv4(f *testing.F) {
	f.Add(packettest.UDP("10.244.1.2", "10.244.2.3", 64, "seed").Build())
	f.Fuzz(func(t *testing.T, b []byte) {
		h, r := ParseIPv4(b)
		if r != fastpath.DropNone {
			return
		}
		if h.HLen < 20 || h.HLen > 60 || h.Total < h.HLen || h.Total > len(b) {
			t.Fatalf("accepted header with hlen %d total %d len %d", h.HLen, h.Total, len(b))
		}
		if b[0]>>4 != 4 || packettest.RefChecksum(b[:h.HLen]) != 0 {
			t.Fatal("accepted a header with a wrong version or checksum")
		}
	})
}
