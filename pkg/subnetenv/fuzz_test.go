package subnetenv

import (
	"bytes"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse, which reads a file other tools may write. Seeds
// live in testdata/fuzz/FuzzParse (flanneld's own files and malformed variants); run with
//
//	go test -fuzz=FuzzParse -fuzztime=30s ./pkg/subnetenv/
//
// Whatever Parse accepts has both required prefixes and an MTU that is absent (0) or in
// range, and what weft would write from it reads back the same: Marshal is a fixed point.
func FuzzParse(f *testing.F) {
	f.Add([]byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"))
	f.Add([]byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Parse(data)
		if err != nil {
			return
		}
		if !e.Network.IsValid() || !e.Subnet.IsValid() {
			t.Fatalf("accepted %q without both prefixes: %+v", data, e)
		}
		if e.MTU != 0 && (e.MTU < 68 || e.MTU > 65535) {
			t.Fatalf("accepted %q with MTU %d", data, e.MTU)
		}
		if e.MTU == 0 {
			// FLANNEL_MTU was absent; weft never writes a file without one (Marshal would
			// write 0, which Parse refuses), so there is no round trip to check.
			return
		}
		out := e.Marshal()
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("accepted %q, but its rendering %q does not parse: %v", data, out, err)
		}
		if again != e {
			t.Fatalf("round trip of %q changed %+v into %+v", data, e, again)
		}
		if out2 := again.Marshal(); !bytes.Equal(out, out2) {
			t.Fatalf("Marshal is not a fixed point: %q then %q", out, out2)
		}
	})
}
