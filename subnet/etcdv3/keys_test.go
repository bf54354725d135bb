package etcdv3_test

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcdv3"
)

func TestKeys(t *testing.T) {
	for _, tc := range []struct {
		prefix, want string
	}{
		{"", "/coreos.com/network"},
		{"/a/b", "/a/b"},
		{"/a/b//", "/a/b"},
	} {
		k := etcdv3.NewKeys(tc.prefix)
		if k != (etcdv3.Config{Prefix: tc.prefix}).Keys() {
			t.Errorf("%q: Config.Keys differs from NewKeys", tc.prefix)
		}
		lease := k.Lease(subnet.LeaseKey(netip.MustParsePrefix("10.244.5.0/24"), netip.Prefix{}))
		if k.Prefix != tc.want || k.Config != tc.want+"/config" || k.SubnetsDir != tc.want+"/subnets/" || lease != tc.want+"/subnets/10.244.5.0-24" {
			t.Errorf("%q: %+v, lease %s", tc.prefix, k, lease)
		}
	}
}
