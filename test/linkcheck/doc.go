// Package linkcheck holds one test: what the weftd and weftctl binaries link. weftctl must
// not link the daemon (it validates configs with backend/backends and reaches etcd through
// subnet.Registry), and no binary may link package testing or weft's test machinery
// (test/..., subnet/subnettest). It has no code of its own.
package linkcheck
