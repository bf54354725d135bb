//go:build linux

package dgram

import "testing"

// FuzzGROSegment feeds arbitrary UDP_GRO control messages to groSegment. Seeds live in
// testdata/fuzz/FuzzGROSegment; run it with e.g.
//
//	go test -fuzz=FuzzGROSegment -fuzztime=30s ./backend/internal/fastpath/dgram/
func FuzzGROSegment(f *testing.F) {
	f.Add([]byte{20, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 104, 0, 0, 0, 0x78, 5, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, ctl []byte) {
		if s := groSegment(ctl); s < 0 {
			t.Fatalf("segment size %d", s)
		}
	})
}
