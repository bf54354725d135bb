// Package kube is weft's Kubernetes Registry (flanneld's --kube-subnet-mgr): the subnets of
// a node are its spec.podCIDRs, assigned by kube-controller-manager, and what a node publishes
// for its peers lives in its annotations, with flanneld's names and bytes, so that weftd and
// flanneld nodes of one cluster peer with each other.
//
// It is storage only, as subnet.Registry says: it reads Nodes through one client-go shared
// informer (one list, then one watch; no polling) and patches this node's annotations. Which
// nodes are peers is decided by subnet's Admission, like for etcd leases. It must not
// program anything, nor choose a subnet: Kubernetes assigns it (see subnet.Assigner).
//
// How the Registry contract maps onto Kubernetes:
//   - a lease is a Node with the annotation <prefix>/kube-subnet-manager = "true": its IPv4
//     pod CIDR, if it publishes an IPv4 public-ip, and its IPv6 one, if it publishes a
//     public-ipv6; its key is theirs (subnet.LeaseKey). A Node without annotations, or with
//     ones that do not parse, is a Malformed (key "nodes/<name>/<key>"), never an error; a
//     Node with one good family and one malformed is both a lease and a Malformed.
//   - leases have no TTL: every lease is a reservation (TTLID 0) that the controller manager
//     pinned to its node. Renewing re-reads the node; TimeToLive is an error.
//   - revisions are this Registry's own count of the node changes its informer delivered
//     (not resourceVersions, which Kubernetes calls opaque). WatchLeases replays changes
//     from a bounded log; a watcher further behind gets subnet.ErrCompacted and lists again,
//     which reads the informer's cache, not the API server.
//   - the network config is the net-conf.json file (the ConfigMap's), not an API object.
package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/subnet"
)

// Config configures a Registry.
type Config struct {
	API      API
	NodeName string // this node's Node object
	// AnnotationPrefix is flanneld's --kube-annotation-prefix (DefaultAnnotationPrefix
	// when empty).
	AnnotationPrefix string
	// NetConfPath is the network config file (flanneld's --net-config-path).
	NetConfPath string
	Log         klog.Logger
	// Waiting, if set, is told each new reason why this node cannot take its subnets yet
	// (no Node, no pod CIDR of a family the network runs), as soon as AssignedSubnets
	// starts waiting for them (for /readyz).
	Waiting func(reason error)
}

// logSize bounds the change log WatchLeases replays from; a watcher further behind lists
// again (from the cache). It holds a few full turns of a 2000-node cluster.
const logSize = 8192

// Registry is the Kubernetes subnet.Registry. See the package comment for what each
// method means here.
type Registry struct {
	api      API
	nodeName string
	ann      annotations
	netConf  string
	log      klog.Logger
	waiting  func(error) // Config.Waiting; never nil
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
	done     chan struct{} // closed when the informer has stopped

	mu      sync.Mutex           // guards the fields below
	seq     int64                // the revision: node changes seen so far
	nodes   map[string]nodeState // the state of every node, by name
	changes []change             // the last logSize changes, oldest first
	wake    chan struct{}        // closed and replaced at each change
	closed  bool
	// ownNode is this node's object as last seen (nil while it does not exist), for
	// AssignedSubnets and the patches.
	ownNode *corev1.Node
	// apiDown is when the API server stopped answering; zero while it answers.
	apiDown time.Time
	// lastWatchErr is the last list or watch error logged.
	lastWatchErr string
}

// nodeState is what one node is as a lease: a lease, a Malformed, both (one family good, the
// other not), or nothing (deleted).
type nodeState struct {
	lease *subnet.Lease
	bad   *subnet.Malformed
}

// change is one node change, at revision seq.
type change struct {
	seq         int64
	before, now nodeState
}

var _ subnet.Registry = (*Registry)(nil)
var _ subnet.Assigner = (*Registry)(nil)

// New starts the node informer and returns the Registry; Close stops it. It does not wait
// for the first list: methods that need it wait, bounded by their context.
func New(cfg Config) (*Registry, error) {
	if cfg.API == nil || cfg.NodeName == "" {
		return nil, errors.New("kube registry: an API and a node name are required")
	}
	prefix := cfg.AnnotationPrefix
	if prefix == "" {
		prefix = DefaultAnnotationPrefix
	}
	ann, err := newAnnotations(prefix)
	if err != nil {
		return nil, fmt.Errorf("--kube-annotation-prefix: %w", err)
	}
	r := &Registry{
		api: cfg.API, nodeName: cfg.NodeName, ann: ann, netConf: cfg.NetConfPath, log: cfg.Log,
		nodes: map[string]nodeState{}, wake: make(chan struct{}), done: make(chan struct{}),
		waiting: cfg.Waiting,
	}
	if r.waiting == nil {
		r.waiting = func(error) {}
	}
	// No resync period: the watch delivers every change; a periodic resync would only
	// replay the cache.
	r.informer = cache.NewSharedIndexInformerWithOptions(r.nodeListWatch(cfg.API), &corev1.Node{}, cache.SharedIndexInformerOptions{})
	if _, err := r.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.observe(obj, false) },
		UpdateFunc: func(_, obj any) { r.observe(obj, false) },
		DeleteFunc: func(obj any) { r.observe(obj, true) },
	}); err != nil {
		return nil, err
	}
	_ = r.informer.SetWatchErrorHandlerWithContext(r.watchError)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		r.informer.RunWithContext(ctx)
	}()
	return r, nil
}

// Close stops the informer and waits for it; watch channels close.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.wakeLocked()
	r.mu.Unlock()
	r.cancel()
	<-r.done
	return nil
}

// watchError logs each new reason the list or watch failed for (the API server refusing
// weftd something, say), once; client-go backs off and lists and watches again.
func (r *Registry) watchError(ctx context.Context, refl *cache.Reflector, err error) {
	r.mu.Lock()
	msg := err.Error()
	first := msg != r.lastWatchErr
	r.lastWatchErr = msg
	r.mu.Unlock()
	if first && ctx.Err() == nil {
		r.log.Error(err, "Cannot list or watch the nodes; retrying")
	}
	cache.DefaultWatchErrorHandler(ctx, refl, err)
}

// observe folds one informer notification into the node states and the change log.
func (r *Registry) observe(obj any, deleted bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, deleted = tomb.Obj, true
	}
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	var now nodeState
	if !deleted {
		now = r.state(n)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if n.Name == r.nodeName {
		if deleted {
			r.ownNode = nil
		} else {
			r.ownNode = n
		}
		r.wakeLocked() // AssignedSubnets and CreateLease wait for this node
	}
	before := r.nodes[n.Name]
	if sameState(before, now) {
		return // a status heartbeat or another change that publishes nothing new
	}
	r.seq++
	if now.lease != nil {
		now.lease.Revision = r.seq
	}
	if now.bad != nil {
		now.bad.Revision = r.seq
	}
	if deleted {
		delete(r.nodes, n.Name)
	} else {
		r.nodes[n.Name] = now
	}
	c := change{seq: r.seq, before: before, now: now}
	if len(r.changes) == logSize {
		r.changes = append(r.changes[:0], r.changes[1:]...)
	}
	r.changes = append(r.changes, c)
	r.wakeLocked()
}

func (r *Registry) wakeLocked() {
	close(r.wake)
	r.wake = make(chan struct{})
}

// state reads a node as a lease, a Malformed, or both: a lease of the families it
// publishes well, and a Malformed saying what is wrong with the others.
func (r *Registry) state(n *corev1.Node) nodeState {
	var st nodeState
	l, cidrs, err := r.ann.nodeLease(n)
	if l.Subnet.IsValid() || l.IPv6Subnet.IsValid() {
		st.lease = &l
	}
	if err != nil {
		key := "nodes/" + n.Name
		if cidrs.Subnet.IsValid() || cidrs.IPv6Subnet.IsValid() {
			// The key ends in the lease key of all its pod CIDRs, which names the node's
			// subnets in the report (a peer that turns malformed goes by the Removed
			// event of its lease, whatever its key).
			key += "/" + cidrs.Key()
		}
		st.bad = &subnet.Malformed{Key: key, Err: fmt.Errorf("node %s: %w", n.Name, err)}
	}
	return st
}

// sameState reports whether two states publish the same lease and the same fault.
func sameState(a, b nodeState) bool {
	sameLease := (a.lease == nil) == (b.lease == nil) &&
		(a.lease == nil || a.lease.Key() == b.lease.Key() && a.lease.Attrs.Equal(b.lease.Attrs))
	sameBad := (a.bad == nil) == (b.bad == nil) &&
		(a.bad == nil || a.bad.Key == b.bad.Key && a.bad.Err.Error() == b.bad.Err.Error())
	return sameLease && sameBad
}

// waitSynced waits until the informer has listed the nodes once.
func (r *Registry) waitSynced(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), r.informer.HasSynced) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("listing nodes from the Kubernetes API: %w", err)
		}
		return errors.New("kube registry closed")
	}
	return nil
}

// snapshot returns the node states and the revision, under the lock.
func (r *Registry) snapshot() (map[string]nodeState, int64, <-chan struct{}, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.nodes), r.seq, r.wake, r.closed
}

// ListLeases returns every node as a lease or a Malformed, from the informer's cache (it
// waits for the first list).
func (r *Registry) ListLeases(ctx context.Context) (subnet.LeaseList, error) {
	if err := r.waitSynced(ctx); err != nil {
		return subnet.LeaseList{}, err
	}
	nodes, seq, _, closed := r.snapshot()
	if closed {
		return subnet.LeaseList{}, errors.New("kube registry closed")
	}
	list := subnet.LeaseList{Revision: seq}
	for _, st := range nodes {
		if st.lease != nil {
			list.Leases = append(list.Leases, *st.lease)
		}
		if st.bad != nil {
			list.Malformed = append(list.Malformed, *st.bad)
		}
	}
	return list, nil
}

// WatchLeases delivers the node changes after rev: a changed lease as Added, a node deleted
// or turned malformed as Removed (and Malformed), a node whose lease key changed (other pod
// CIDRs, a family published or no longer) as both.
// A rev older than the change log reaches gets subnet.ErrCompacted.
func (r *Registry) WatchLeases(ctx context.Context, rev int64) <-chan subnet.WatchBatch {
	out := make(chan subnet.WatchBatch, 1)
	go func() {
		defer close(out)
		for {
			r.mu.Lock()
			closed, wake := r.closed, r.wake
			var batch subnet.WatchBatch
			switch {
			case closed:
			case len(r.changes) > 0 && rev < r.changes[0].seq-1, len(r.changes) == 0 && rev < r.seq:
				batch.Err = fmt.Errorf("revision %d is older than the %d node changes kept: %w", rev, logSize, subnet.ErrCompacted)
			default:
				for _, c := range r.changes {
					if c.seq > rev {
						batch.Events, batch.Malformed = appendChange(batch.Events, batch.Malformed, c)
						batch.Revision = c.seq
					}
				}
			}
			r.mu.Unlock()
			if closed {
				return
			}
			if batch.Err != nil || batch.Revision > rev {
				select {
				case out <- batch:
				case <-ctx.Done():
					return
				}
				if batch.Err != nil {
					return
				}
				rev = batch.Revision
			}
			select {
			case <-wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// appendChange turns one node change into events.
func appendChange(events []subnet.Event, bad []subnet.Malformed, c change) ([]subnet.Event, []subnet.Malformed) {
	if c.before.lease != nil && (c.now.lease == nil || c.now.lease.Key() != c.before.lease.Key()) {
		gone := subnet.Lease{Subnet: c.before.lease.Subnet, IPv6Subnet: c.before.lease.IPv6Subnet}
		events = append(events, subnet.Event{Type: subnet.Removed, Lease: gone})
	}
	if c.now.lease != nil {
		events = append(events, subnet.Event{Type: subnet.Added, Lease: *c.now.lease})
	}
	if c.now.bad != nil {
		bad = append(bad, *c.now.bad)
	}
	return events, bad
}

// waitChange waits until a node changes or ctx ends.
func (r *Registry) waitChange(ctx context.Context, wake <-chan struct{}) error {
	select {
	case <-wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
