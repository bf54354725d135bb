// Package subnettest provides an in-memory subnet.Registry for unit tests of the policy
// above the store (lease choice, peer diffing). It is imported only by tests and never
// compiled into a binary; the real store is subnet/etcdv3, tested against a real etcd.
package subnettest

import (
	"context"

	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/weftnet/weft/subnet"
)

type entry struct {
	lease subnet.Lease
	raw   []byte // the stored value, when it was put raw (malformed tests)
	key   string // the key below the prefix, when it was put raw
	ttl   time.Duration
}

// Registry is an in-memory subnet.Registry with revisions, TTL handles, compaction and
// fault injection. TTLs do not expire by themselves: tests call Expire.
type Registry struct {
	mu        sync.Mutex // guards everything below
	rev       int64
	compacted int64
	nextTTLID int64
	config    []byte
	leases    map[string]entry // by key below <prefix>/subnets/
	history   []subnet.WatchBatch
	watchers  map[chan subnet.WatchBatch]int64 // channel -> next revision to deliver
	// Fail, if set, is returned by every call while non-nil (a store outage).
	failErr error
	// BeforeCreate, if set, runs (without the lock) before each CreateLease: a hook to
	// lose create races on purpose.
	BeforeCreate func(sn netip.Prefix)
	ListCalls    int
}

// New returns an empty registry at revision 1.
func New() *Registry {
	return &Registry{rev: 1, nextTTLID: 100, leases: map[string]entry{}, watchers: map[chan subnet.WatchBatch]int64{}}
}

var _ subnet.Registry = (*Registry)(nil)

// SetFail makes every call fail with err (nil ends the outage). Watches end with err.
func (r *Registry) SetFail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failErr = err
	if err != nil {
		for ch := range r.watchers {
			ch <- subnet.WatchBatch{Err: err}
			close(ch)
			delete(r.watchers, ch)
		}
	}
}

// SetConfig stores the raw config.
func (r *Registry) SetConfig(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rev++
	r.config = b
}

func (r *Registry) GetConfig(ctx context.Context) ([]byte, int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failErr != nil {
		return nil, 0, r.failErr
	}
	if r.config == nil {
		return nil, r.rev, subnet.ErrNotFound
	}
	return r.config, r.rev, nil
}

// WatchConfig is not needed by policy tests; it closes when ctx ends.
func (r *Registry) WatchConfig(ctx context.Context, rev int64) <-chan []byte {
	ch := make(chan []byte)
	go func() { <-ctx.Done(); close(ch) }()
	return ch
}

// PutConfig stores raw unless, with leasesRev > 0, a lease was written after leasesRev.
func (r *Registry) PutConfig(ctx context.Context, raw []byte, leasesRev int64) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failErr != nil {
		return 0, r.failErr
	}
	if leasesRev > 0 {
		for k, e := range r.leases {
			if e.lease.Revision > leasesRev {
				return 0, fmt.Errorf("put config: lease %s changed at revision %d: %w", k, e.lease.Revision, subnet.ErrTaken)
			}
		}
	}
	r.rev++
	r.config = raw
	return r.rev, nil
}

func (r *Registry) ListLeases(ctx context.Context) (subnet.LeaseList, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ListCalls++
	if r.failErr != nil {
		return subnet.LeaseList{}, r.failErr
	}
	list := subnet.LeaseList{Revision: r.rev}
	for k, e := range r.leases {
		if e.raw != nil {
			if l, err := subnet.ParseLease(k, e.raw); err != nil {
				list.Malformed = append(list.Malformed, subnet.Malformed{Key: "/coreos.com/network/subnets/" + k, Err: err, Revision: e.lease.Revision})
			} else {
				l.Revision = e.lease.Revision
				list.Leases = append(list.Leases, l)
			}
			continue
		}
		list.Leases = append(list.Leases, e.lease)
	}
	return list, nil
}

func (r *Registry) CreateLease(ctx context.Context, sn, sn6 netip.Prefix, attrs subnet.LeaseAttrs, ttl time.Duration) (subnet.Lease, error) {
	if r.BeforeCreate != nil {
		r.BeforeCreate(sn)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failErr != nil {
		return subnet.Lease{}, r.failErr
	}
	if err := subnet.CheckLeaseSubnets(sn, sn6); err != nil {
		return subnet.Lease{}, fmt.Errorf("create lease: %w", err)
	}
	if err := subnet.CheckLeaseAttrs(sn, sn6, attrs); err != nil {
		return subnet.Lease{}, fmt.Errorf("create lease: %w", err)
	}
	key := subnet.LeaseKey(sn, sn6)
	if _, ok := r.leases[key]; ok {
		return subnet.Lease{}, fmt.Errorf("create %s: %w", key, subnet.ErrTaken)
	}
	return r.putLocked(subnet.Lease{Subnet: sn, IPv6Subnet: sn6, Attrs: attrs}, ttl), nil
}

func (r *Registry) UpdateLease(ctx context.Context, old subnet.Lease, attrs subnet.LeaseAttrs, ttl time.Duration) (subnet.Lease, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failErr != nil {
		return subnet.Lease{}, r.failErr
	}
	e, ok := r.leases[old.Key()]
	if !ok || e.lease.Revision != old.Revision {
		return subnet.Lease{}, fmt.Errorf("update %s: %w", old.Key(), subnet.ErrTaken)
	}
	return r.putLocked(subnet.Lease{Subnet: old.Subnet, IPv6Subnet: old.IPv6Subnet, Attrs: attrs}, ttl), nil
}

func (r *Registry) putLocked(l subnet.Lease, ttl time.Duration) subnet.Lease {
	r.rev++
	l.Revision = r.rev
	l.TTLID, l.Expiration = 0, time.Time{}
	if ttl > 0 {
		r.nextTTLID++
		l.TTLID = r.nextTTLID
		l.Expiration = time.Now().Add(ttl)
	}
	r.leases[l.Key()] = entry{lease: l, ttl: ttl}
	r.publishLocked(subnet.WatchBatch{Revision: r.rev, Events: []subnet.Event{{Type: subnet.Added, Lease: l}}})
	return l
}

func (r *Registry) RenewLease(ctx context.Context, l subnet.Lease) (subnet.Lease, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failErr != nil {
		return subnet.Lease{}, r.failErr
	}
	e, ok := r.leases[l.Key()]
	if ok && e.raw == nil && l.TTLID != 0 && e.lease.TTLID == 0 && e.lease.SameNode(l) {
		return e.lease, nil // pinned by an operator: a reservation of mine now
	}
	if !ok || e.lease.TTLID != l.TTLID {
		return subnet.Lease{}, fmt.Errorf("renew %s: %w", l.Key(), subnet.ErrNotFound)
	}
	if e.lease.TTLID != 0 {
		e.lease.Expiration = time.Now().Add(e.ttl)
		r.leases[l.Key()] = e
	}
	return e.lease, nil
}

func (r *Registry) DeleteLease(ctx context.Context, sn, sn6 netip.Prefix) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failErr != nil {
		return r.failErr
	}
	r.deleteLocked(subnet.LeaseKey(sn, sn6))
	return nil
}

func (r *Registry) DeleteLeaseAt(ctx context.Context, sn, sn6 netip.Prefix, rev int64) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failErr != nil {
		return 0, r.failErr
	}
	key := subnet.LeaseKey(sn, sn6)
	if e, ok := r.leases[key]; !ok || e.lease.Revision != rev {
		return 0, fmt.Errorf("delete %s at revision %d: %w", key, rev, subnet.ErrTaken)
	}
	r.deleteLocked(key)
	return r.rev, nil
}

// TimeToLive is the time left until the lease's Expiration; Expire ends it.
func (r *Registry) TimeToLive(ctx context.Context, l subnet.Lease) (time.Duration, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failErr != nil {
		return 0, r.failErr
	}
	if l.TTLID == 0 {
		return 0, fmt.Errorf("time to live of %s: a reservation has no TTL", l.Key())
	}
	for _, e := range r.leases {
		if e.raw == nil && e.lease.TTLID == l.TTLID {
			return max(time.Until(e.lease.Expiration), 0), nil
		}
	}
	return 0, fmt.Errorf("time to live of %s: TTL handle %d: %w", l.Key(), l.TTLID, subnet.ErrNotFound)
}

// Expire removes a lease as if its TTL ran out.
func (r *Registry) Expire(sn netip.Prefix) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deleteLocked(subnet.LeaseKey(sn, netip.Prefix{}))
}

func (r *Registry) deleteLocked(key string) {
	e, ok := r.leases[key]
	if !ok {
		return
	}
	delete(r.leases, key)
	r.rev++
	r.publishLocked(subnet.WatchBatch{Revision: r.rev, Events: []subnet.Event{{Type: subnet.Removed, Lease: subnet.Lease{Subnet: e.lease.Subnet, IPv6Subnet: e.lease.IPv6Subnet}}}})
}

// PutRaw stores an arbitrary key and value under subnets/, as a broken writer would.
func (r *Registry) PutRaw(key string, value []byte, reservation bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rev++
	e := entry{raw: value, key: key}
	e.lease.Revision = r.rev
	l, err := subnet.ParseLease(key, value)
	b := subnet.WatchBatch{Revision: r.rev}
	if err != nil {
		b.Malformed = []subnet.Malformed{{Key: "/coreos.com/network/subnets/" + key, Err: err, Revision: r.rev}}
	} else {
		l.Revision = r.rev
		if !reservation {
			r.nextTTLID++
			l.TTLID = r.nextTTLID
			l.Expiration = time.Now().Add(time.Hour)
		}
		e = entry{lease: l}
		b.Events = []subnet.Event{{Type: subnet.Added, Lease: l}}
	}
	r.leases[key] = e
	r.publishLocked(b)
}

// Compact drops history up to the current revision: watches from older revisions fail
// with subnet.ErrCompacted.
func (r *Registry) Compact() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.compacted = r.rev
	r.history = nil
}

func (r *Registry) publishLocked(b subnet.WatchBatch) {
	r.history = append(r.history, b)
	for ch, next := range r.watchers {
		if b.Revision >= next {
			ch <- b
			r.watchers[ch] = b.Revision + 1
		}
	}
}

func (r *Registry) WatchLeases(ctx context.Context, rev int64) <-chan subnet.WatchBatch {
	ch := make(chan subnet.WatchBatch, 1024)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failErr != nil {
		ch <- subnet.WatchBatch{Err: r.failErr}
		close(ch)
		return ch
	}
	rev++ // the contract: changes after rev
	if rev <= r.compacted {
		ch <- subnet.WatchBatch{Err: fmt.Errorf("watch from %d: %w", rev, subnet.ErrCompacted)}
		close(ch)
		return ch
	}
	for _, b := range r.history {
		if b.Revision >= rev {
			ch <- b
		}
	}
	r.watchers[ch] = max(rev, r.rev+1)
	go func() {
		<-ctx.Done()
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, ok := r.watchers[ch]; ok {
			delete(r.watchers, ch)
			close(ch)
		}
	}()
	return ch
}

// MustAttrs is a test helper: attributes for a public IP and backend type.
func MustAttrs(publicIP, backendType string) subnet.LeaseAttrs {
	return subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(publicIP), BackendType: backendType}
}
