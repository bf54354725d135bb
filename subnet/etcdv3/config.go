package etcdv3

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// GetConfig returns the bytes at <prefix>/config and the store revision of the read, or an
// error wrapping subnet.ErrNotFound when the key is absent.
func (r *Registry) GetConfig(ctx context.Context) ([]byte, int64, error) {
	if err := r.checkOpen("read network config"); err != nil {
		return nil, 0, err
	}
	resp, err := r.client.Get(ctx, r.keys.Config)
	if err != nil {
		return nil, 0, fmt.Errorf("read network config %s: %w", r.keys.Config, r.conn.explain(err))
	}
	if len(resp.Kvs) == 0 {
		return nil, resp.Header.Revision, fmt.Errorf("network config %s: %w", r.keys.Config, subnet.ErrNotFound)
	}
	return resp.Kvs[0].Value, resp.Header.Revision, nil
}

// WatchConfig delivers the config bytes after each change made after revision rev (rev <= 0:
// changes from now on), and nil when the key is deleted. The channel closes when ctx ends,
// when the watch fails (compaction, lost leader, closed client) or after Close; callers
// then re-read with GetConfig.
func (r *Registry) WatchConfig(ctx context.Context, rev int64) <-chan []byte {
	out := make(chan []byte)
	go func() {
		defer close(out)
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		defer cancel()
		for resp := range r.client.Watch(wctx, r.keys.Config, revOpts(rev)...) {
			if err := resp.Err(); err != nil {
				r.log.V(2).Info("Network config watch ended", "key", r.keys.Config, "err", err)
				return
			}
			for _, ev := range resp.Events {
				var v []byte
				if ev.Type == mvccpb.PUT {
					v = append([]byte{}, ev.Kv.Value...) // non-nil even when empty
				}
				if !send(ctx, r.done, out, v) {
					return
				}
			}
		}
	}()
	return out
}

// PutConfig writes raw to <prefix>/config in one transaction. With leasesRev > 0 the
// transaction is guarded by "every key below <prefix>/subnets/ has a modification revision
// <= leasesRev" (a lease created or changed after the caller's listing fails it, a deleted
// one is simply absent), and losing returns an error wrapping subnet.ErrTaken.
func (r *Registry) PutConfig(ctx context.Context, raw []byte, leasesRev int64) (int64, error) {
	if err := r.checkOpen("write network config"); err != nil {
		return 0, err
	}
	if leasesRev < 0 {
		return 0, fmt.Errorf("write network config %s: negative lease revision %d", r.keys.Config, leasesRev)
	}
	txn := r.client.Txn(ctx)
	if leasesRev > 0 {
		txn = txn.If(clientv3.Compare(clientv3.ModRevision(r.keys.SubnetsDir), "<", leasesRev+1).WithPrefix())
	}
	resp, err := txn.Then(clientv3.OpPut(r.keys.Config, string(raw))).Commit()
	if err != nil {
		return 0, fmt.Errorf("write network config %s: %w", r.keys.Config, r.conn.explain(err))
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("write network config %s: a lease below %s was created or changed after revision %d: %w",
			r.keys.Config, r.keys.SubnetsDir, leasesRev, subnet.ErrTaken)
	}
	return resp.Header.Revision, nil
}
