package forward

import (
	"fmt"
	"net"
	"time"
)

// Waits between failed Config.Reopen calls: from reopenMinDelay, doubling up to
// reopenMaxDelay.
const (
	reopenMinDelay = 20 * time.Millisecond
	reopenMaxDelay = time.Second
)

// replaceDevice swaps a new Device from Reopen in for old, which is gone (cause), and
// returns it. It fails with cause when there is no Reopen, and with an error wrapping
// net.ErrClosed when the Forwarder is closed first.
func (f *Forwarder) replaceDevice(old *deviceRef, cause error) (*deviceRef, error) {
	if f.reopen == nil {
		return nil, cause
	}
	start := time.Now()
	delay := reopenMinDelay
	for attempt := 1; ; attempt++ {
		dev, err := f.reopen()
		if err == nil {
			f.devMu.Lock()
			if f.closed {
				f.devMu.Unlock()
				dev.Close()
				return nil, fmt.Errorf("replace gone device: %w", net.ErrClosed)
			}
			ref := &deviceRef{dev}
			f.dev.Store(ref)
			f.devMu.Unlock()
			// Closed after the swap: a Write of the connection loop still on old fails
			// with net.ErrClosed, which it takes for a drop since old is no longer current.
			old.Close()
			f.log.Info("Device deleted by someone else; re-created it and resumed forwarding",
				"cause", cause.Error(), "after", time.Since(start), "attempts", attempt, "offloads", f.Offloads())
			return ref, nil
		}
		if attempt == 1 {
			f.log.Error(err, "Device deleted by someone else; cannot re-create it, retrying", "cause", cause.Error())
		}
		t := time.NewTimer(delay)
		select {
		case <-f.done:
			t.Stop()
			return nil, fmt.Errorf("replace gone device: %w", net.ErrClosed)
		case <-t.C:
		}
		delay = min(2*delay, reopenMaxDelay)
	}
}
