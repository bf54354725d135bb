package subnet

import "net/netip"

// PeerRule is the backend's part of peer admission: which BackendType a peer lease must
// name, and a check of its BackendData.
type PeerRule struct {
	BackendType    string // the backend this node runs
	AnyBackendType bool   // admit leases of every BackendType (flanneld's udp does)
	// CheckData, if set, says what is wrong with a lease's BackendData, or nil.
	CheckData func(LeaseAttrs) error
}

var _ = netip.Prefix{}
