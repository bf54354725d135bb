package subnet

import (
	"context"
	"errors"
	"time"

	"github.com/weftnet/weft/pkg/wait"
)

// WatchPeers sends the admitted peers' leases to out until ctx ends (then it returns nil):
// first every current peer as one Added batch (possibly empty, which tells the caller the
// initial state is known), then each change. Only leases the Admission of this node's lease
// admits are sent (see Admission); the others are ignored with their reason (logged once per
// lease and reason, counted through the Observer, listed by Ignored), and a peer whose lease
// turns unusable or malformed is sent as Removed. The node's own lease is never sent; if the
// watch sees it deleted or taken by another PublicIP, Hold is told. After a compaction or a
// broken watch it lists again and sends only the differences.
//
// An outage of the store (the watch ends with an error other than a compaction: etcd
// unreachable, or without a leader) is logged once when it starts and once when the store
// answers again; in between the peers are kept as they are.
func (m *Manager) WatchPeers(ctx context.Context, out chan<- []Event) error {
	ps := newPeerSet(m.admission(), m.logIgnored)
	rev, err := m.resync(ctx, ps, out, time.Time{})
	if err != nil {
		return nil // ctx ended
	}
	for ctx.Err() == nil {
		broken := false
		var outage time.Time // when the store went away; zero when the watch just needs a re-list
		for batch := range m.reg.WatchLeases(ctx, rev) {
			if batch.Err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(batch.Err, ErrCompacted) {
					m.log.Info("Lease watch fell behind a compaction; listing again", "revision", rev)
				} else {
					m.obs.StoreError("watch", batch.Err)
					outage = time.Now()
					m.log.Error(batch.Err, "etcd is unavailable: lost the lease watch; the data plane is kept as it is until etcd answers again")
				}
				broken = true
				break
			}
			events := ps.applyBatch(m, batch)
			rev = max(rev, batch.Revision)
			if len(events) > 0 && !send(ctx, out, events) {
				return nil
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if broken {
			if wait.Sleep(ctx, m.retryDelay()) != nil {
				return nil
			}
		}
		m.obs.WatchResynced()
		if rev, err = m.resync(ctx, ps, out, outage); err != nil {
			return nil
		}
		if broken {
			// The store may have been away for long: renew now that it answers (asking
			// before the list works would only fail, bounded renewals being logged).
			m.RenewSoon()
		}
	}
	return nil
}

// resync lists the leases (retrying until it works or ctx ends), sends the differences from
// what ps knew, and returns the list's revision. outage, if not zero, is when the store was
// found unavailable (already logged); the recovery is logged once, with the differences.
func (m *Manager) resync(ctx context.Context, ps *peerSet, out chan<- []Event, outage time.Time) (int64, error) {
	var list LeaseList
	for failing := false; ; failing = true {
		var err error
		if list, err = m.listOnce(ctx); err == nil {
			if failing && outage.IsZero() {
				m.log.Info("Listing leases works again")
			}
			break
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		m.obs.StoreError("list", err)
		if !failing && outage.IsZero() {
			m.log.Error(err, "Listing leases failed; retrying")
		}
		if err := wait.Sleep(ctx, m.retryDelay()); err != nil {
			return 0, err
		}
	}
	own := m.Own()
	for _, l := range list.Leases {
		if !own.IsZero() && l.Key() == own.Key() && !l.SameNode(own) {
			m.signalLost(list.Revision)
		}
	}
	if !own.IsZero() && !containsKey(list.Leases, own.Key()) {
		m.signalLost(list.Revision)
	}
	ps.adm = m.admission()
	events := ps.resync(list)
	m.reportIgnored(ps)
	if !outage.IsZero() {
		added := 0
		for _, e := range events {
			if e.Type == Added {
				added++
			}
		}
		m.log.Info("etcd is available again: listed the leases, applying only the differences",
			"after", time.Since(outage).Round(time.Millisecond), "peers", len(ps.peers), "added", added, "removed", len(events)-added)
	}
	if !send(ctx, out, events) {
		return 0, ctx.Err()
	}
	return list.Revision, nil
}

// listOnce lists the leases, bounded by storeTimeout: an unreachable store fails the
// attempt (for the retry loop to log and retry) instead of blocking until it is back.
func (m *Manager) listOnce(ctx context.Context) (LeaseList, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return m.reg.ListLeases(ctx)
}

func containsKey(leases []Lease, key string) bool {
	for _, l := range leases {
		if l.Key() == key {
			return true
		}
	}
	return false
}

// applyBatch folds one watch batch into ps and returns the peer events it causes.
func (ps *peerSet) applyBatch(m *Manager, b WatchBatch) []Event {
	own := m.Own()
	var events []Event
	for _, bad := range b.Malformed {
		events = append(events, ps.malformed(bad)...)
	}
	for _, e := range b.Events {
		// The own lease is its key: another key with the same IPv4 subnet (a dual-stack
		// key) is a lease like any other, which admission refuses as overlapping.
		if !own.IsZero() && e.Lease.Key() == own.Key() {
			if e.Type == Removed || !e.Lease.SameNode(own) {
				m.signalLost(b.Revision)
			}
			continue
		}
		if e.Type == Removed {
			events = append(events, ps.remove(e.Lease.Key())...)
		} else {
			events = append(events, ps.add(e.Lease)...)
		}
	}
	if ps.ignoredChanged {
		m.reportIgnored(ps)
	}
	return events
}

func send(ctx context.Context, out chan<- []Event, events []Event) bool {
	select {
	case out <- events:
		return true
	case <-ctx.Done():
		return false
	}
}
