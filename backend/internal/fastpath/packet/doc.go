// Package packet is the fast path's work on the bytes of single packets: decoding and
// checking IPv4 headers (ParseIPv4), the TTL with its incremental checksum update
// (DecrementTTL), the Internet checksum (AVX2 on amd64, checksum_amd64.s, with a word sum
// in Go everywhere), ICMP errors as RFC 1812 allows them, the virtio-net header, TCP
// segmentation of TUN superpackets (TSOSplitter), checksum completion (CompleteChecksum)
// and TCP coalescing into superpackets (GROPlanner).
//
// Everything here is a pure function of its arguments or of a value the caller owns: it
// must not do I/O, keep state beyond that value, log, lock, or allocate per packet
// (planners and splitters keep their scratch between batches). Which packet goes where is
// the forwarder's decision, not this package's.
package packet
