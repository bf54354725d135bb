package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// leaseSubnet parses a lease key and checks the value names the joining node.
func leaseSubnet(key, prefix string, value []byte, want netip.Addr) (netip.Prefix, error) {
	sn, _, err := subnet.ParseLeaseKey(strings.TrimPrefix(key, prefix))
	if err != nil {
		return netip.Prefix{}, err
	}
	var attrs subnet.LeaseAttrs
	if err := json.Unmarshal(value, &attrs); err != nil {
		return netip.Prefix{}, fmt.Errorf("lease %s: %w", key, err)
	}
	if attrs.PublicIP != want {
		return netip.Prefix{}, fmt.Errorf("lease %s is %s's, not the joining node's %s", key, attrs.PublicIP, want)
	}
	return sn, nil
}

// watchStream reads one etcd watch, keeping events not consumed yet.
type watchStream struct {
	ch      clientv3.WatchChan
	pending []*clientv3.Event
	at      time.Time // when the pending events were received
}

// next returns the first event matching, and when the bench received it, waiting up to
// timeout. Events before it are dropped.
func (ws *watchStream) next(ctx context.Context, timeout time.Duration, match func(*clientv3.Event) bool) (*clientv3.Event, time.Time, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		for len(ws.pending) > 0 {
			ev := ws.pending[0]
			ws.pending = ws.pending[1:]
			if match(ev) {
				return ev, ws.at, nil
			}
		}
		select {
		case resp, ok := <-ws.ch:
			if !ok {
				return nil, time.Time{}, errors.New("watch closed")
			}
			if err := resp.Err(); err != nil {
				return nil, time.Time{}, err
			}
			ws.pending, ws.at = resp.Events, time.Now()
		case <-timer.C:
			return nil, time.Time{}, fmt.Errorf("nothing within %v", timeout)
		case <-ctx.Done():
			return nil, time.Time{}, ctx.Err()
		}
	}
}
