//go:build linux

package tun_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
	"github.com/weftnet/weft/backend/internal/fastpath/tun"
	"github.com/weftnet/weft/test/nstest"
)

// TestTUNDeletedUnderReader checks that deleting a TUN wakes a blocked Read with
// ErrDeviceGone, that Write says the same, and that Close then gives net.ErrClosed. The
// queue also says it is detached (what Read checks when the poller, not a read, saw the
// deletion: it then reports EPOLLERR alone, and Go "not pollable").
func TestTUNDeletedUnderReader(t *testing.T) {
	if err := tun.Check(); err != nil {
		t.Skip(err)
	}
	for _, offload := range []bool{false, true} {
		ns := nstest.Temp(t, "tungone")
		var dev *tun.Device
		inNS(t, ns, func() (err error) {
			dev, err = tun.OpenWith("wtun0", tun.Options{Persist: true, Batch: 8, Offload: offload})
			return err
		})
		mustRun(t, ns, "ip", "link", "set", "wtun0", "up")
		got := make(chan error, 1)
		go func() {
			in := slots(8, 1500)
			for range 1000 { // packets the kernel sends on its own (IPv6) come first
				if _, err := dev.Read(in); err != nil {
					got <- err
					return
				}
			}
			got <- errors.New("Read kept returning packets")
		}()
		time.Sleep(50 * time.Millisecond) // Read is blocked
		if dev.Detached() {
			t.Fatalf("offload %v: the queue says it is detached before the deletion", offload)
		}
		mustRun(t, ns, "ip", "link", "del", "wtun0")
		select {
		case err := <-got:
			if !errors.Is(err, fastpath.ErrDeviceGone) {
				t.Fatalf("offload %v: Read after deletion: %v, want ErrDeviceGone", offload, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("offload %v: deletion did not wake Read", offload)
		}
		if !dev.Detached() {
			t.Fatalf("offload %v: the queue does not say it is detached after the deletion", offload)
		}
		w := slots(1, 1500)
		w[0].Len = copy(w[0].Buf[w[0].Off:], packettest.UDP("10.9.1.2", "10.9.0.1", 64, "x").Build())
		if _, err := dev.Write(w); !errors.Is(err, fastpath.ErrDeviceGone) {
			t.Fatalf("offload %v: Write after deletion: %v, want ErrDeviceGone", offload, err)
		}
		if err := dev.Close(); err != nil {
			t.Fatalf("offload %v: Close: %v", offload, err)
		}
		if _, err := dev.Read(slots(1, 1500)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("offload %v: Read after Close: %v, want net.ErrClosed", offload, err)
		}
	}
}
