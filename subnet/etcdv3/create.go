package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// CreateLease creates the key for sn and sn6 unless a live key already holds either subnet.
// With ttl > 0 the key is attached to a fresh etcd lease (granted first, revoked again if the
// create loses); with ttl == 0 it is a reservation. Losing returns an error wrapping
// subnet.ErrTaken; any other error also means "not created".
//
// A dual-stack key names both subnets (10.244.5.0-24&fd00:10:244:5::-64), so a unique key
// does not make its subnets unique: 10.244.5.0-24&fd00:10:244:7::-64 and
// 10.244.5.0-24&fd00:10:244:9::-64 are two keys for one IPv4 subnet, and two nodes whose
// listings differed (one saw a lease the other did not yet) can write them at once. Two
// guards make each subnet belong to one key:
//
//   - IPv4, in the create transaction itself: "create_revision == 0" on the key, on the
//     IPv4-only key <v4>-<len> and on every key with the prefix <v4>-<len>& (the dual-stack
//     keys of that subnet). The "&" matters: without it, 10.0.0.0-1 would be a string
//     prefix of 10.0.0.0-16, a different subnet. An IPv6-only key (0.0.0.0-0&<v6>-<len>)
//     has no IPv4 subnet and compares its exact key only.
//   - IPv6, just after the transaction: etcd compares a key range only by prefix, and the
//     IPv6 subnet is a key's suffix. So CreateLease reads every lease key (one range
//     request, keys only, linearizable) and, if another key holding the same IPv6 subnet
//     was created before its own (a lower create revision), deletes its key again and
//     returns ErrTaken. This is sound: of all keys ever holding one IPv6 subnet, each one
//     reads after its own create, so it sees every older key still alive and gives way to
//     it; the oldest live one never gives way. The price is that a loser's key exists for
//     one round trip (watchers see it come and go) and that a loser may give way to an
//     older key that is itself gone a moment later (it then retries; nothing is shared).
//
// Keys are compared by their names, as flanneld writes them: leases, reservations (no etcd
// lease) and keys written by flanneld or by hand count alike, whatever their value. Only
// equal subnets are compared: overlapping ones of different lengths (left from a change of
// SubnetLen) are the chooser's business (subnet.Manager avoids them). flanneld's own creates
// do not run these guards, so in a mixed cluster a flanneld node racing a weft node keeps
// flanneld's guarantee (an exact key) for its own key.
func (r *Registry) CreateLease(ctx context.Context, sn, sn6 netip.Prefix, attrs subnet.LeaseAttrs, ttl time.Duration) (subnet.Lease, error) {
	if err := r.checkOpen("create lease"); err != nil {
		return subnet.Lease{}, err
	}
	if err := subnet.CheckLeaseSubnets(sn, sn6); err != nil {
		return subnet.Lease{}, fmt.Errorf("create lease: %w", err)
	}
	key := r.leaseKey(subnet.LeaseKey(sn, sn6))
	value, stored, err := encodeAttrs(sn, sn6, attrs)
	if err != nil {
		return subnet.Lease{}, fmt.Errorf("create lease %s: %w", key, err)
	}
	g, err := r.grant(ctx, ttl)
	if err != nil {
		return subnet.Lease{}, fmt.Errorf("create lease %s: %w", key, err)
	}
	resp, err := r.client.Txn(ctx).
		If(r.absent(key, sn)...).
		Then(clientv3.OpPut(key, string(value), g.putOpts()...)).
		Commit()
	if err != nil || !resp.Succeeded {
		// Revoking also undoes a put whose outcome an error hid, so that the error
		// means "not created" in every case.
		r.revoke(ctx, g.id)
		if err != nil {
			return subnet.Lease{}, fmt.Errorf("create lease %s: %w", key, err)
		}
		if sn.IsValid() {
			return subnet.Lease{}, fmt.Errorf("create lease %s: IPv4 subnet %s is already held by a key: %w", key, sn, subnet.ErrTaken)
		}
		return subnet.Lease{}, fmt.Errorf("create lease %s: the key exists: %w", key, subnet.ErrTaken)
	}
	rev := resp.Header.Revision // the put's revision: the key's create revision
	if sn6.IsValid() {
		if err := r.checkIPv6Holders(ctx, key, sn6, rev); err != nil {
			if uerr := r.undoCreate(ctx, key, g.id, rev); uerr != nil {
				return subnet.Lease{}, fmt.Errorf("create lease %s: %w; deleting the key again failed, it may remain until its TTL ends: %w", key, err, uerr)
			}
			return subnet.Lease{}, fmt.Errorf("create lease %s: %w", key, err)
		}
	}
	return subnet.Lease{
		Subnet:     sn,
		IPv6Subnet: sn6,
		Attrs:      stored,
		TTLID:      g.id,
		Expiration: g.expiration,
		Revision:   rev,
	}, nil
}

// absent returns the create transaction's conditions: no key exists that is key, the
// IPv4-only key of sn, or a dual-stack key of sn (sn zero: key alone).
func (r *Registry) absent(key string, sn netip.Prefix) []clientv3.Cmp {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	if sn.IsValid() {
		v4Key := r.leaseKey(subnet.LeaseKey(sn, netip.Prefix{}))
		if v4Key != key {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(v4Key), "=", 0))
		}
		// Over a range, etcd requires every key in it to match; an empty range matches.
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(v4Key+"&"), "=", 0).WithPrefix())
	}
	return cmps
}

// checkIPv6Holders returns an error wrapping subnet.ErrTaken if a key other than key that
// holds sn6 was created before rev (key's create revision), or if key is no longer the one
// created at rev; an error from the read otherwise.
func (r *Registry) checkIPv6Holders(ctx context.Context, key string, sn6 netip.Prefix, rev int64) error {
	resp, err := r.client.Get(ctx, r.keys.SubnetsDir, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("check that no older key holds %s: %w", sn6, r.conn.explain(err))
	}
	own := false
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if k == key {
			own = kv.CreateRevision == rev
			continue
		}
		if kv.CreateRevision >= rev {
			continue // younger: it gives way to this key
		}
		_, v6, err := subnet.ParseLeaseKey(strings.TrimPrefix(k, r.keys.SubnetsDir))
		if err == nil && v6 == sn6 {
			return fmt.Errorf("IPv6 subnet %s is already held by %s (created at revision %d, this key at %d): %w",
				sn6, k, kv.CreateRevision, rev, subnet.ErrTaken)
		}
	}
	if !own {
		return fmt.Errorf("the key was deleted or replaced right after it was created at revision %d: %w", rev, subnet.ErrTaken)
	}
	return nil
}

// undoCreate deletes key if it is still the one created at rev, and drops its etcd lease id
// (0: a reservation, none). It runs even when ctx has just been cancelled, and returns an
// error only if the key may remain.
func (r *Registry) undoCreate(ctx context.Context, key string, id, rev int64) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, delErr := r.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if delErr == nil {
		r.revoke(ctx, id)
		return nil
	}
	if id == 0 {
		return r.conn.explain(delErr)
	}
	// Revoking the etcd lease deletes the key with it.
	if _, err := r.client.Revoke(ctx, clientv3.LeaseID(id)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("delete: %v; revoke etcd lease %x: %w", delErr, id, r.conn.explain(err))
	}
	return nil
}
