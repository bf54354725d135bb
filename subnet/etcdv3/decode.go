package etcdv3

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/weftnet/weft/subnet"
)

// decodeLease turns a stored key-value below dir (<prefix>/subnets/) into a Lease with its
// etcd lease ID and modification revision. It fails for keys outside dir, nested keys,
// keys not written in the canonical form weft and flanneld write (so that Lease.Key()
// always names the stored key again), and values that are not lease JSON.
func decodeLease(dir string, kv *mvccpb.KeyValue) (subnet.Lease, error) {
	suffix, err := leaseKeySuffix(dir, kv.Key)
	if err != nil {
		return subnet.Lease{}, err
	}
	l, err := subnet.ParseLease(suffix, kv.Value)
	if err != nil {
		return subnet.Lease{}, err
	}
	l.TTLID = kv.Lease
	l.Revision = kv.ModRevision
	return l, nil
}

// leaseKeySuffix returns the lease key below dir, checked to be canonical.
func leaseKeySuffix(dir string, key []byte) (string, error) {
	suffix, ok := strings.CutPrefix(string(key), dir)
	if !ok {
		return "", fmt.Errorf("key %q is not below %s", key, dir)
	}
	v4, v6, err := subnet.ParseLeaseKey(suffix)
	if err != nil {
		return "", err
	}
	if canon := subnet.LeaseKey(v4, v6); canon != suffix {
		return "", fmt.Errorf("lease key %q is not in canonical form (%q)", suffix, canon)
	}
	return suffix, nil
}

// encodeAttrs returns the stored bytes of attrs (flannel's exact format) for a lease of the
// subnets sn and sn6, and the attributes as they read back from those bytes, so that what a
// write returns equals what a list returns.
func encodeAttrs(sn, sn6 netip.Prefix, attrs subnet.LeaseAttrs) ([]byte, subnet.LeaseAttrs, error) {
	if err := subnet.CheckLeaseAttrs(sn, sn6, attrs); err != nil {
		return nil, subnet.LeaseAttrs{}, err
	}
	value, err := json.Marshal(attrs)
	if err != nil {
		return nil, subnet.LeaseAttrs{}, fmt.Errorf("encode lease attributes: %w", err)
	}
	var back subnet.LeaseAttrs
	if err := json.Unmarshal(value, &back); err != nil {
		return nil, subnet.LeaseAttrs{}, fmt.Errorf("encoded lease attributes do not read back: %w", err)
	}
	return value, back, nil
}
