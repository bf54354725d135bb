// Package subnet owns weft's control-plane model: the network Config, subnet Leases and
// peer Events, the Registry contract that stores them, and the Manager that decides which
// subnet a node takes, keeps it alive and turns the store's changes into peer events.
//
// It must not touch the kernel; backends do that from the events it produces. The etcd
// implementation of Registry lives in subnet/etcdv3; an in-memory one for policy tests lives
// in subnet/subnettest and is never compiled into a binary.
package subnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Typed errors of the Registry contract. Check them with errors.Is.
var (
	// ErrNotFound: the config key or the lease does not exist.
	ErrNotFound = errors.New("not found")
	// ErrTaken: a create or compare-and-swap lost to another writer.
	ErrTaken = errors.New("subnet already taken or changed concurrently")
	// ErrCompacted: a watch asked for a revision the store has compacted away; list again.
	ErrCompacted = errors.New("watch revision compacted")
	// ErrLeaseLost: my lease vanished (deleted, expired or taken over) while I held it.
	ErrLeaseLost = errors.New("own subnet lease lost")
	// ErrNoFreeSubnet: every subnet in [SubnetMin, SubnetMax] is leased or reserved.
	ErrNoFreeSubnet = errors.New("no free subnet in range")
)

// EventType says whether a lease appeared (or changed) or went away.
type EventType int

const (
	// Added: a lease was created or its value changed. Apply treats it as "make it so".
	Added EventType = iota
	// Removed: a lease was deleted or expired.
	Removed
)

func (t EventType) String() string {
	if t == Removed {
		return "removed"
	}
	return "added"
}

// Event is one change to a peer's lease.
type Event struct {
	Type  EventType
	Lease Lease
}

// Malformed is a lease key or value that could not be parsed. It is reported, never fatal.
type Malformed struct {
	Key string // the full key in the store
	Err error

	// The key's storage bookkeeping, as in Lease, filled in by the Registry: its TTL
	// handle (0 when it has none) and its modification revision (for DeleteLeaseAt).
	TTLID    int64
	Revision int64
}

// LeaseList is a consistent snapshot of all leases.
type LeaseList struct {
	Leases    []Lease
	Malformed []Malformed
	Revision  int64 // store revision of the snapshot; watch from Revision+1
}

// WatchBatch is what a lease watch delivers: the changes of one or more revisions, or an error.
type WatchBatch struct {
	Events    []Event     // Removed events carry only the Subnet (and IPv6Subnet)
	Malformed []Malformed // keys changed to something unparsable (treat as removed)
	Revision  int64       // the revision these changes bring the watcher to
	Err       error       // ErrCompacted, or a transport error; the channel closes after it
}

// Registry is storage only: it reads and writes what it is told, with no policy. All
// methods are safe for concurrent use. After Close, methods return errors and watch
// channels close.
type Registry interface {
	// GetConfig returns the raw config bytes and the revision they were read at, or
	// ErrNotFound when <prefix>/config does not exist.
	GetConfig(ctx context.Context) ([]byte, int64, error)
	// WatchConfig delivers the raw config (nil when deleted) each time it changes after
	// revision rev. The channel closes when ctx ends or the watch fails; callers re-read.
	WatchConfig(ctx context.Context, rev int64) <-chan []byte
	// PutConfig writes raw as the config, byte for byte, and returns the store revision
	// of the write. It validates nothing: callers parse the config first. With
	// leasesRev > 0 it is a compare-and-swap against the leases: it writes only if no
	// lease key has been created or changed after revision leasesRev (the Revision of the
	// LeaseList the caller checked the new config against), and returns ErrTaken
	// otherwise, writing nothing; a lease deleted meanwhile does not count. With
	// leasesRev == 0 it writes unconditionally.
	PutConfig(ctx context.Context, raw []byte, leasesRev int64) (int64, error)

	// ListLeases returns every lease with one request to the store; lease TTL handles
	// come with the keys, so no per-lease request is made.
	ListLeases(ctx context.Context) (LeaseList, error)
	// CreateLease atomically creates a lease for the subnets sn (IPv4) and sn6 (IPv6), either
	// of which may be zero but not both, if no key exists for them, with a TTL (ttl > 0) or
	// as a reservation (ttl == 0). ErrTaken if the key exists or, where one key names two
	// subnets (etcd's dual-stack keys), if another key already holds sn or sn6.
	CreateLease(ctx context.Context, sn, sn6 netip.Prefix, attrs LeaseAttrs, ttl time.Duration) (Lease, error)
	// UpdateLease rewrites an existing lease's value if its revision is still
	// old.Revision, under a fresh TTL (ttl > 0) or as a reservation (ttl == 0).
	// ErrTaken if it changed or vanished meanwhile.
	UpdateLease(ctx context.Context, old Lease, attrs LeaseAttrs, ttl time.Duration) (Lease, error)
	// RenewLease extends the lease's TTL to its full length without rewriting the value
	// and returns the lease with its new Expiration. ErrNotFound if the TTL handle or the
	// key is gone.
	// A key that has meanwhile become a reservation (no TTL handle) naming l's PublicIP
	// is not gone: an operator pinned the subnet to its node. RenewLease returns that
	// reservation (TTLID 0) even if l's TTL handle no longer exists, and the holder keeps
	// it with nothing more to renew.
	RenewLease(ctx context.Context, l Lease) (Lease, error)
	// DeleteLease removes the key for the subnets sn and sn6 (as in CreateLease). Deleting a
	// missing key is not an error.
	DeleteLease(ctx context.Context, sn, sn6 netip.Prefix) error
	// DeleteLeaseAt removes the key for sn and sn6 only if its modification revision is still
	// rev (the Revision of a Lease or of a Malformed from ListLeases; the key's value
	// need not parse), then drops the TTL handle it carried (best effort: a handle left
	// behind carries no key and expires on its own). It returns the store revision of the
	// delete, or ErrTaken, deleting nothing, if the key changed or vanished after rev.
	DeleteLeaseAt(ctx context.Context, sn, sn6 netip.Prefix, rev int64) (int64, error)
	// TimeToLive returns how long l's TTL handle (l.TTLID) has left, as the store counts
	// it, or ErrNotFound when the handle has expired or was revoked. It costs one request
	// per call (ListLeases leaves Expiration zero to avoid that). A reservation (TTLID 0)
	// has no TTL: asking is an error.
	TimeToLive(ctx context.Context, l Lease) (time.Duration, error)
	// WatchLeases delivers lease changes after revision rev, in order, until ctx ends or
	// an error is delivered (then the channel closes).
	WatchLeases(ctx context.Context, rev int64) <-chan WatchBatch
}

// ErrNotAssigned: the Registry assigns this node's subnet (an Assigner) and has none yet.
var ErrNotAssigned = errors.New("no subnet assigned to this node yet")

// Assigner is a Registry where a node's subnets are not chosen by weft but assigned to it
// by someone else: in Kubernetes, kube-controller-manager sets the Node's spec.podCIDRs. The
// Manager then claims those subnets (CreateLease) instead of choosing them.
type Assigner interface {
	// AssignedSubnets returns the IPv4 and IPv6 subnets assigned to this node for the
	// families cfg runs (the other zero), waiting until ctx ends for them; then the error
	// wraps ErrNotAssigned and says what is missing.
	AssignedSubnets(ctx context.Context, cfg *Config) (sn, sn6 netip.Prefix, err error)
}

// CheckLeaseSubnets says what is wrong with a pair of lease subnets, or nil: sn must be
// zero or an IPv4 network address, sn6 zero or an IPv6 one, and not both zero.
func CheckLeaseSubnets(sn, sn6 netip.Prefix) error {
	switch {
	case !sn.IsValid() && !sn6.IsValid():
		return errors.New("a lease needs an IPv4 or an IPv6 subnet; neither is given")
	case sn.IsValid() && (!sn.Addr().Is4() || sn.Masked() != sn || sn.Bits() == 0):
		return fmt.Errorf("%v is not an IPv4 subnet", sn)
	case sn6.IsValid() && (!sn6.Addr().Is6() || sn6.Addr().Is4In6() || sn6.Addr().Zone() != "" || sn6.Masked() != sn6):
		return fmt.Errorf("%v is not an IPv6 subnet", sn6)
	}
	return nil
}

// CheckLeaseAttrs says what is wrong with attrs as the value of a lease of the subnets sn
// and sn6, or nil: a lease with an IPv4 subnet names an IPv4 PublicIP, one with an IPv6
// subnet an IPv6 PublicIPv6 (flanneld's peers route each family to its public address).
func CheckLeaseAttrs(sn, sn6 netip.Prefix, attrs LeaseAttrs) error {
	switch {
	case sn.IsValid() && (!attrs.PublicIP.Is4() || attrs.PublicIP.IsUnspecified()):
		return fmt.Errorf("lease %s has no IPv4 PublicIP (got %v)", LeaseKey(sn, sn6), attrs.PublicIP)
	case sn6.IsValid() && (!attrs.PublicIPv6.Is6() || attrs.PublicIPv6.IsUnspecified()):
		return fmt.Errorf("lease %s has no IPv6 PublicIPv6 (got %v)", LeaseKey(sn, sn6), attrs.PublicIPv6)
	}
	return nil
}
