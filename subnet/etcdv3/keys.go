package etcdv3

import "strings"

// Keys is the etcd key layout below one prefix, flanneld's: the network config at
// <prefix>/config and one key per lease at <prefix>/subnets/<lease key> (subnet.LeaseKey,
// e.g. 10.244.5.0-24). It is the one place in weft that spells the layout; the daemon and
// weftctl name keys in their messages through it.
type Keys struct {
	Prefix     string // normalized: DefaultPrefix when empty, without a trailing slash
	Config     string // <prefix>/config
	SubnetsDir string // <prefix>/subnets/, with the slash, so that a prefix range is exact
}

// NewKeys returns the layout below prefix. The prefix is normalized: empty means
// DefaultPrefix, and trailing slashes are dropped, so that "/a/" and "/a" name the same keys.
func NewKeys(prefix string) Keys {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	prefix = strings.TrimRight(prefix, "/")
	return Keys{Prefix: prefix, Config: prefix + "/config", SubnetsDir: prefix + "/subnets/"}
}

// Lease returns the full key of a lease key such as 10.244.5.0-24 (subnet.LeaseKey,
// subnet.Lease.Key).
func (k Keys) Lease(leaseKey string) string { return k.SubnetsDir + leaseKey }

// Keys returns the layout below c.Prefix.
func (c Config) Keys() Keys { return NewKeys(c.Prefix) }
