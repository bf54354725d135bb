package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/weftnet/weft/subnet"
)

// errWatchEnded is delivered when etcd's watch channel closes while the caller's context
// is still live (for example after the client was closed underneath).
var errWatchEnded = errors.New("etcd watch ended unexpectedly")

// WatchLeases delivers the lease changes made after revision rev (rev <= 0: from now on),
// one batch per etcd watch response, until ctx ends, Close is called, or an error is
// delivered; then the channel closes. The watch requires a leader, so a member cut off
// from its cluster ends it with an error instead of going silent. So does losing every
// connection to etcd (the client's connection state turning TRANSIENT_FAILURE): the etcd
// client would otherwise wait for etcd in silence and resume the watch, and the caller would
// never learn of the outage (nor list again, nor renew early, once etcd is back). Losing
// one member of several is not an error: the client resumes the watch on another member
// from the last revision, missing nothing.
//
// A put delivers Added with the lease as stored (TTLID, Revision). A delete, including an
// expiry, delivers Removed carrying the Subnet, and the previous Attrs and TTLID when the
// previous value is known. A put whose key or value does not parse is listed in Malformed;
// if it overwrote a valid lease, that lease is also delivered as Removed, so that applying
// Events in order never keeps a peer whose value became garbage. Deletes of keys that are
// not lease keys are ignored. Compaction delivers an error wrapping subnet.ErrCompacted.
func (r *Registry) WatchLeases(ctx context.Context, rev int64) <-chan subnet.WatchBatch {
	out := make(chan subnet.WatchBatch)
	go func() {
		defer close(out)
		wctx, cancel := context.WithCancelCause(clientv3.WithRequireLeader(ctx))
		defer cancel(nil)
		go r.cancelWhenUnreachable(wctx, cancel)
		opts := append(revOpts(rev), clientv3.WithPrefix(), clientv3.WithPrevKV())
		for resp := range r.client.Watch(wctx, r.keys.SubnetsDir, opts...) {
			if err := resp.Err(); err != nil {
				if ctx.Err() == nil {
					send(ctx, r.done, out, subnet.WatchBatch{Revision: resp.Header.Revision, Err: r.watchError(rev, resp, err)})
				}
				return
			}
			b := translate(r.keys.SubnetsDir, resp.Events)
			if len(b.Events) == 0 && len(b.Malformed) == 0 {
				continue // progress notification
			}
			b.Revision = resp.Header.Revision
			if !send(ctx, r.done, out, b) {
				return
			}
		}
		if ctx.Err() == nil {
			err := errWatchEnded
			if cause := context.Cause(wctx); errors.Is(cause, errUnreachable) {
				err = cause
			}
			send(ctx, r.done, out, subnet.WatchBatch{Err: fmt.Errorf("watch %s: %w", r.keys.SubnetsDir, err)})
		}
	}()
	return out
}

// errUnreachable ends a lease watch when no etcd endpoint can be reached.
var errUnreachable = errors.New("etcd unreachable")

// unreachableGrace is how long the connection may fail before a watch gives up on it: a
// restart of etcd within it is bridged by the client, which resumes the watch from the last
// revision without losing anything.
const unreachableGrace = 5 * time.Second

// cancelWhenUnreachable cancels a watch (with a cause wrapping errUnreachable) once the
// client's connection to etcd has been failing (TRANSIENT_FAILURE: no endpoint accepts a
// connection) without becoming READY for unreachableGrace, or was shut down. It returns
// when ctx ends.
func (r *Registry) cancelWhenUnreachable(ctx context.Context, cancel context.CancelCauseFunc) {
	conn := r.client.ActiveConnection()
	var failingSince time.Time // zero while the connection has not failed since it was READY
	for {
		st := conn.GetState()
		switch {
		case st == connectivity.Shutdown:
			cancel(fmt.Errorf("%w: connection shut down", errUnreachable))
			return
		case st == connectivity.Ready:
			failingSince = time.Time{}
		case st == connectivity.TransientFailure && failingSince.IsZero():
			failingSince = time.Now()
		}
		wctx, stop := ctx, context.CancelFunc(func() {})
		if !failingSince.IsZero() {
			left := unreachableGrace - time.Since(failingSince)
			if left <= 0 {
				cancel(fmt.Errorf("%w: no connection for %v (state %s)", errUnreachable, unreachableGrace, st))
				return
			}
			wctx, stop = context.WithTimeout(ctx, left)
		}
		conn.WaitForStateChange(wctx, st)
		stop()
		if ctx.Err() != nil {
			return
		}
	}
}

func (r *Registry) watchError(rev int64, resp clientv3.WatchResponse, err error) error {
	if resp.CompactRevision != 0 || errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("watch %s after revision %d: store compacted up to revision %d: %w", r.keys.SubnetsDir, rev, resp.CompactRevision, subnet.ErrCompacted)
	}
	return fmt.Errorf("watch %s after revision %d: %w", r.keys.SubnetsDir, rev, err)
}

// revOpts starts a watch just after rev, or at the current revision when rev <= 0.
func revOpts(rev int64) []clientv3.OpOption {
	if rev <= 0 {
		return nil
	}
	return []clientv3.OpOption{clientv3.WithRev(rev + 1)}
}

// translate turns the events of one watch response on dir into a batch (without Revision).
func translate(dir string, events []*clientv3.Event) subnet.WatchBatch {
	var b subnet.WatchBatch
	for _, ev := range events {
		switch ev.Type {
		case mvccpb.PUT:
			l, err := decodeLease(dir, ev.Kv)
			if err == nil {
				b.Events = append(b.Events, subnet.Event{Type: subnet.Added, Lease: l})
				continue
			}
			b.Malformed = append(b.Malformed, subnet.Malformed{Key: string(ev.Kv.Key), Err: err, TTLID: ev.Kv.Lease, Revision: ev.Kv.ModRevision})
			if ev.PrevKv != nil {
				if prev, err := decodeLease(dir, ev.PrevKv); err == nil {
					prev.Revision = ev.Kv.ModRevision
					b.Events = append(b.Events, subnet.Event{Type: subnet.Removed, Lease: prev})
				}
			}
		case mvccpb.DELETE:
			suffix, err := leaseKeySuffix(dir, ev.Kv.Key)
			if err != nil {
				continue // never a lease, so nothing to remove
			}
			gone := subnet.Lease{Revision: ev.Kv.ModRevision}
			if ev.PrevKv != nil {
				if prev, err := decodeLease(dir, ev.PrevKv); err == nil {
					gone = prev
					gone.Revision = ev.Kv.ModRevision
				}
			}
			gone.Subnet, gone.IPv6Subnet, _ = subnet.ParseLeaseKey(suffix)
			b.Events = append(b.Events, subnet.Event{Type: subnet.Removed, Lease: gone})
		}
	}
	return b
}

// send delivers v unless ctx ends or the registry is closed first; it reports delivery.
func send[T any](ctx context.Context, done <-chan struct{}, out chan<- T, v T) bool {
	select {
	case <-done:
		return false
	default:
	}
	select {
	case out <- v:
		return true
	case <-ctx.Done():
		return false
	case <-done:
		return false
	}
}
