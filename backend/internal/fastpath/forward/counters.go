package forward

import (
	"sync/atomic"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

// counters is the shared, atomically updated form of fastpath.Stats.
type counters struct {
	deviceIn, deviceInBytes   atomic.Uint64
	connOut, connOutBytes     atomic.Uint64
	connIn, connInBytes       atomic.Uint64
	deviceOut, deviceOutBytes atomic.Uint64
	icmpOut                   atomic.Uint64
	readErrors                atomic.Uint64
	drops                     [fastpath.NumDropReasons]atomic.Uint64
}

// batchCounts accumulates one batch's counts on a loop's stack; flush adds them to the
// shared counters with one atomic operation per non-zero field.
type batchCounts struct {
	deviceIn, deviceInBytes   uint64
	connOut, connOutBytes     uint64
	connIn, connInBytes       uint64
	deviceOut, deviceOutBytes uint64
	icmp                      uint64
	drops                     [fastpath.NumDropReasons]uint64
}

func (b *batchCounts) drop(r fastpath.DropReason) { b.drops[r]++ }

func addIf(c *atomic.Uint64, v uint64) {
	if v != 0 {
		c.Add(v)
	}
}

// flush adds a batch to the shared counters and zeroes it.
func (c *counters) flush(b *batchCounts) {
	addIf(&c.deviceIn, b.deviceIn)
	addIf(&c.deviceInBytes, b.deviceInBytes)
	addIf(&c.connOut, b.connOut)
	addIf(&c.connOutBytes, b.connOutBytes)
	addIf(&c.connIn, b.connIn)
	addIf(&c.connInBytes, b.connInBytes)
	addIf(&c.deviceOut, b.deviceOut)
	addIf(&c.deviceOutBytes, b.deviceOutBytes)
	addIf(&c.icmpOut, b.icmp)
	for r, v := range b.drops {
		addIf(&c.drops[r], v)
	}
	*b = batchCounts{}
}

func (c *counters) snapshot() fastpath.Stats {
	s := fastpath.Stats{
		DeviceIn:   fastpath.Counter{Packets: c.deviceIn.Load(), Bytes: c.deviceInBytes.Load()},
		ConnOut:    fastpath.Counter{Packets: c.connOut.Load(), Bytes: c.connOutBytes.Load()},
		ConnIn:     fastpath.Counter{Packets: c.connIn.Load(), Bytes: c.connInBytes.Load()},
		DeviceOut:  fastpath.Counter{Packets: c.deviceOut.Load(), Bytes: c.deviceOutBytes.Load()},
		ICMPOut:    c.icmpOut.Load(),
		ReadErrors: c.readErrors.Load(),
	}
	for r := range s.Drops {
		s.Drops[r] = c.drops[r].Load()
	}
	return s
}
