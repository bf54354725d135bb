package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// ListLeases returns every lease below <prefix>/subnets/ from one range request. TTLID
// comes from each key's etcd lease; Expiration is left zero (asking it would cost one
// request per lease). Keys or values that do not parse are returned in Malformed.
func (r *Registry) ListLeases(ctx context.Context) (subnet.LeaseList, error) {
	if err := r.checkOpen("list leases"); err != nil {
		return subnet.LeaseList{}, err
	}
	resp, err := r.client.Get(ctx, r.keys.SubnetsDir, clientv3.WithPrefix())
	if err != nil {
		return subnet.LeaseList{}, fmt.Errorf("list leases under %s: %w", r.keys.SubnetsDir, r.conn.explain(err))
	}
	list := subnet.LeaseList{Revision: resp.Header.Revision}
	for _, kv := range resp.Kvs {
		l, err := decodeLease(r.keys.SubnetsDir, kv)
		if err != nil {
			list.Malformed = append(list.Malformed, subnet.Malformed{Key: string(kv.Key), Err: err, TTLID: kv.Lease, Revision: kv.ModRevision})
			continue
		}
		list.Leases = append(list.Leases, l)
	}
	return list, nil
}

// UpdateLease rewrites old's key if its modification revision is still old.Revision, in
// one transaction, under a fresh etcd lease (ttl > 0) or none (ttl == 0: a reservation).
// After success, old's etcd lease is revoked (best effort) when it differs; no key is
// attached to it any more, so revoking it deletes nothing. A changed or vanished key
// returns an error wrapping subnet.ErrTaken.
func (r *Registry) UpdateLease(ctx context.Context, old subnet.Lease, attrs subnet.LeaseAttrs, ttl time.Duration) (subnet.Lease, error) {
	if err := r.checkOpen("update lease"); err != nil {
		return subnet.Lease{}, err
	}
	if err := subnet.CheckLeaseSubnets(old.Subnet, old.IPv6Subnet); err != nil {
		return subnet.Lease{}, fmt.Errorf("update lease: %w", err)
	}
	key := r.leaseKey(old.Key())
	if old.Revision <= 0 {
		// ModRevision == 0 would mean "absent": the transaction would create the key.
		return subnet.Lease{}, fmt.Errorf("update lease %s: the lease has no revision; it must come from the store", key)
	}
	value, stored, err := encodeAttrs(old.Subnet, old.IPv6Subnet, attrs)
	if err != nil {
		return subnet.Lease{}, fmt.Errorf("update lease %s: %w", key, err)
	}
	g, err := r.grant(ctx, ttl)
	if err != nil {
		return subnet.Lease{}, fmt.Errorf("update lease %s: %w", key, err)
	}
	resp, err := r.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", old.Revision)).
		Then(clientv3.OpPut(key, string(value), g.putOpts()...)).
		Commit()
	if err != nil {
		// The outcome is unknown: if the put happened, revoking the fresh grant would
		// delete the key. Leave the grant to expire on its own.
		return subnet.Lease{}, fmt.Errorf("update lease %s: %w", key, err)
	}
	if !resp.Succeeded {
		r.revoke(ctx, g.id)
		return subnet.Lease{}, fmt.Errorf("update lease %s at revision %d: %w", key, old.Revision, subnet.ErrTaken)
	}
	if old.TTLID != 0 && old.TTLID != g.id {
		r.revoke(ctx, old.TTLID)
	}
	return subnet.Lease{
		Subnet:     old.Subnet,
		IPv6Subnet: old.IPv6Subnet,
		Attrs:      stored,
		TTLID:      g.id,
		Expiration: g.expiration,
		Revision:   resp.Header.Revision,
	}, nil
}

// RenewLease refreshes l's etcd lease to its full TTL (one keep-alive) and then checks, with
// one read, that l's key still exists and still carries that etcd lease: only then is the
// key sure to live until the returned Expiration. A reservation (TTLID 0) only has its key's
// existence checked. Either failure returns an error wrapping subnet.ErrNotFound.
//
// A key that has meanwhile become a reservation (no etcd lease) naming l's node (Lease.SameNode) is not a
// loss: an operator pinned the node's subnet (weftctl reserve drops the TTL and revokes the
// etcd lease; flannel's documented "etcdctl put" without a lease leaves it alive, unused).
// RenewLease then returns that reservation, TTLID 0, whether or not l's etcd lease still
// exists, and the holder has nothing more to renew. A reservation naming another PublicIP
// is a loss.
//
// The returned lease is read from the store: its Revision (and Attrs) are current, and for a
// reservation that someone has meanwhile attached a TTL to, TTLID is that etcd lease.
func (r *Registry) RenewLease(ctx context.Context, l subnet.Lease) (subnet.Lease, error) {
	if err := r.checkOpen("renew lease"); err != nil {
		return subnet.Lease{}, err
	}
	if err := subnet.CheckLeaseSubnets(l.Subnet, l.IPv6Subnet); err != nil {
		return subnet.Lease{}, fmt.Errorf("renew lease: %w", err)
	}
	key := r.leaseKey(l.Key())
	var expiration time.Time
	handleGone := false // l's etcd lease no longer exists; the key decides what that means
	if l.TTLID != 0 {
		start := time.Now()
		ka, err := r.client.KeepAliveOnce(ctx, clientv3.LeaseID(l.TTLID))
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			handleGone = true
		case err != nil:
			return subnet.Lease{}, fmt.Errorf("renew lease %s: keep-alive of etcd lease %x: %w", key, l.TTLID, r.conn.explain(err))
		default:
			expiration = start.Add(time.Duration(ka.TTL) * time.Second)
		}
	}
	resp, err := r.client.Get(ctx, key)
	if err != nil {
		return subnet.Lease{}, fmt.Errorf("renew lease %s: %w", key, r.conn.explain(err))
	}
	if len(resp.Kvs) == 0 {
		if handleGone {
			return subnet.Lease{}, fmt.Errorf("renew lease %s: etcd lease %x and the key are gone: %w", key, l.TTLID, subnet.ErrNotFound)
		}
		return subnet.Lease{}, fmt.Errorf("renew lease %s: key is gone: %w", key, subnet.ErrNotFound)
	}
	kv := resp.Kvs[0]
	if l.TTLID != 0 && kv.Lease != l.TTLID && kv.Lease != 0 {
		return subnet.Lease{}, fmt.Errorf("renew lease %s: key is now held under etcd lease %x, not %x: %w", key, kv.Lease, l.TTLID, subnet.ErrNotFound)
	}
	cur, err := decodeLease(r.keys.SubnetsDir, kv)
	if err != nil {
		return subnet.Lease{}, fmt.Errorf("renew lease %s: stored value no longer parses (%w): %w", key, err, subnet.ErrNotFound)
	}
	if l.TTLID != 0 && kv.Lease == 0 {
		// Pinned: a reservation now. Mine only if it names me.
		if !cur.SameNode(l) {
			return subnet.Lease{}, fmt.Errorf("renew lease %s: key is now a reservation for %s, not %s: %w", key,
				nodeOf(cur), nodeOf(l), subnet.ErrNotFound)
		}
		return cur, nil
	}
	if handleGone { // not reachable with etcd (a key dies with its etcd lease); be safe
		return subnet.Lease{}, fmt.Errorf("renew lease %s: etcd lease %x: %w", key, l.TTLID, subnet.ErrNotFound)
	}
	cur.Expiration = expiration
	if kv.Lease != l.TTLID {
		cur.Expiration = time.Time{} // a TTL appeared on a reservation; its expiry is unknown
	}
	return cur, nil
}

// DeleteLease deletes the key for sn and sn6 (a missing key is not an error) and revokes, best
// effort, the etcd lease it carried.
func (r *Registry) DeleteLease(ctx context.Context, sn, sn6 netip.Prefix) error {
	if err := r.checkOpen("delete lease"); err != nil {
		return err
	}
	if err := subnet.CheckLeaseSubnets(sn, sn6); err != nil {
		return fmt.Errorf("delete lease: %w", err)
	}
	key := r.leaseKey(subnet.LeaseKey(sn, sn6))
	resp, err := r.client.Delete(ctx, key, clientv3.WithPrevKV())
	if err != nil {
		return fmt.Errorf("delete lease %s: %w", key, err)
	}
	for _, kv := range resp.PrevKvs {
		if kv.Lease != 0 {
			r.revoke(ctx, kv.Lease)
		}
	}
	return nil
}

// DeleteLeaseAt deletes the key for sn and sn6 in one transaction "if mod_revision(key) == rev then
// delete", and then revokes, best effort, the etcd lease the deleted key carried. A changed
// or vanished key returns an error wrapping subnet.ErrTaken.
func (r *Registry) DeleteLeaseAt(ctx context.Context, sn, sn6 netip.Prefix, rev int64) (int64, error) {
	if err := r.checkOpen("delete lease"); err != nil {
		return 0, err
	}
	if err := subnet.CheckLeaseSubnets(sn, sn6); err != nil {
		return 0, fmt.Errorf("delete lease: %w", err)
	}
	key := r.leaseKey(subnet.LeaseKey(sn, sn6))
	if rev <= 0 {
		// ModRevision == 0 would mean "absent": the delete would always lose.
		return 0, fmt.Errorf("delete lease %s: no revision given; it must come from the store", key)
	}
	resp, err := r.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key, clientv3.WithPrevKV())).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("delete lease %s: %w", key, r.conn.explain(err))
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("delete lease %s at revision %d: %w", key, rev, subnet.ErrTaken)
	}
	for _, op := range resp.Responses {
		if del := op.GetResponseDeleteRange(); del != nil {
			for _, kv := range del.PrevKvs {
				r.revoke(ctx, kv.Lease)
			}
		}
	}
	return resp.Header.Revision, nil
}

// TimeToLive asks etcd how long l's etcd lease has left (whole seconds, as etcd counts).
// An etcd lease that is gone (etcd answers "not found", or a TTL of -1) returns an error
// wrapping subnet.ErrNotFound.
func (r *Registry) TimeToLive(ctx context.Context, l subnet.Lease) (time.Duration, error) {
	if err := r.checkOpen("time to live"); err != nil {
		return 0, err
	}
	key := r.leaseKey(l.Key())
	if l.TTLID == 0 {
		return 0, fmt.Errorf("time to live of %s: a reservation has no TTL", key)
	}
	resp, err := r.client.TimeToLive(ctx, clientv3.LeaseID(l.TTLID))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL < 0) {
		return 0, fmt.Errorf("time to live of %s: etcd lease %x: %w", key, l.TTLID, subnet.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("time to live of %s: etcd lease %x: %w", key, l.TTLID, r.conn.explain(err))
	}
	return time.Duration(resp.TTL) * time.Second, nil
}

// grantResult is a fresh etcd lease, or none (id 0) for a reservation.
type grantResult struct {
	id         int64
	expiration time.Time
}

func (g grantResult) putOpts() []clientv3.OpOption {
	if g.id == 0 {
		return nil
	}
	return []clientv3.OpOption{clientv3.WithLease(clientv3.LeaseID(g.id))}
}

// grant creates an etcd lease for ttl, rounded up to whole seconds; ttl == 0 grants none.
// etcd may raise a very short TTL to its minimum; the expiration follows what it granted.
func (r *Registry) grant(ctx context.Context, ttl time.Duration) (grantResult, error) {
	switch {
	case ttl < 0:
		return grantResult{}, fmt.Errorf("negative lease TTL %v", ttl)
	case ttl == 0:
		return grantResult{}, nil
	}
	secs := int64(math.Ceil(ttl.Seconds()))
	start := time.Now()
	resp, err := r.client.Grant(ctx, secs)
	if err != nil {
		return grantResult{}, fmt.Errorf("grant etcd lease of %ds: %w", secs, r.conn.explain(err))
	}
	return grantResult{id: int64(resp.ID), expiration: start.Add(time.Duration(resp.TTL) * time.Second)}, nil
}

// revoke drops an etcd lease, best effort: a failure only leaves the lease to expire on
// its own. It runs even when ctx has just been cancelled.
func (r *Registry) revoke(ctx context.Context, id int64) {
	if id == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if _, err := r.client.Revoke(ctx, clientv3.LeaseID(id)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		r.log.Info("Could not revoke an unused etcd lease; it will expire on its own", "leaseID", fmt.Sprintf("%x", id), "err", err)
	}
}

// nodeOf names the node a lease is for: its public IP, or its public IPv6 address when it
// has none (IPv6-only).
func nodeOf(l subnet.Lease) string {
	if l.Attrs.PublicIP.IsValid() {
		return l.Attrs.PublicIP.String()
	}
	return l.Attrs.PublicIPv6.String()
}
