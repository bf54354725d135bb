// Package status defines the JSON document weftd serves at GET /status on its health port:
// what the node is and holds right now (its lease, backend, peers and counters). It also
// provides the HTTP handler that serves the document and a client that fetches it, which
// weftctl status uses.
//
// The package only describes and transports: it gathers no facts itself. The daemon builds
// a Status in the function it gives to Handler, on every request.
//
// Compatibility: fields are only ever added. Clients must ignore unknown fields (the
// standard library's json.Unmarshal does) and treat a missing field as its zero value.
package status

import (
	"net/netip"
	"time"
)

// Path is where weftd serves the document on its health endpoint.
const Path = "/status"

// Status is the document served at Path. JSON names are lowerCamel; addresses and prefixes
// are strings ("192.0.2.1", "10.244.5.0/24"); times are RFC 3339.
type Status struct {
	// Version is weftd's version, as printed by weftd --version.
	Version string `json:"version"`
	// Time is when the document was made, by the node's clock. Clients compute durations
	// (time to lease expiry, uptime) against it rather than their own clock.
	Time time.Time `json:"time"`
	// Started is when the weftd process started.
	Started time.Time `json:"started,omitzero"`

	Node    Node    `json:"node"`
	Lease   Lease   `json:"lease"`
	Backend Backend `json:"backend"`
	// ConfigWarnings are what weftd reads in the network config differently from what was
	// probably meant, or does not implement yet, while running it as flanneld would
	// (unknown keys ignored, host bits in Network masked, IPv6 of a dual-stack config).
	ConfigWarnings []string `json:"configWarnings,omitempty"`

	// Peers are the other nodes' leases the node knows of, in any order; an empty list
	// (never null, when served by Handler) while there are none.
	Peers []Peer `json:"peers"`

	// Counters are monotonic counts since the process started, by stable lowerCamel name,
	// e.g. "leaseRenewals", "leaseRenewFailures", "watchResyncs", "storeErrors",
	// "peerApplyErrors". Backends add their own ("udpPacketsSent", ...). A counter that
	// has not happened yet may be absent.
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// Node is the node's identity on the underlay network.
type Node struct {
	Hostname string `json:"hostname,omitempty"`
	// Interface is the external interface chosen for inter-node traffic, e.g. "eth0".
	Interface string `json:"interface,omitempty"`
	// InterfaceIP is that interface's IPv4 address.
	InterfaceIP netip.Addr `json:"interfaceIP,omitzero"`
	// PublicIP is the address peers send to (--public-ip, else InterfaceIP); it is the
	// PublicIP of the node's lease. Absent in an IPv6-only network.
	PublicIP netip.Addr `json:"publicIP,omitzero"`
	// InterfaceIPv6 is the external interface's IPv6 address; absent unless the network
	// runs IPv6.
	InterfaceIPv6 netip.Addr `json:"interfaceIPv6,omitzero"`
	// PublicIPv6 is the IPv6 address peers send to (--public-ipv6, else InterfaceIPv6); it
	// is the PublicIPv6 of the node's lease. Absent unless the network runs IPv6.
	PublicIPv6 netip.Addr `json:"publicIPv6,omitzero"`
}

// Lease is the node's own subnet lease.
type Lease struct {
	// Network is the IPv4 pod network of the config weftd runs with, e.g. 10.244.0.0/16;
	// absent in an IPv6-only network.
	Network netip.Prefix `json:"network,omitzero"`
	// Subnet is the node's IPv4 subnet; zero (absent) while no lease is held and in an
	// IPv6-only network.
	Subnet netip.Prefix `json:"subnet,omitzero"`
	// IPv6Network is the IPv6 pod network of the config (IPv6Network), e.g. fd00:10::/56;
	// absent unless the network runs IPv6.
	IPv6Network netip.Prefix `json:"ipv6Network,omitzero"`
	// IPv6Subnet is the node's IPv6 subnet, e.g. fd00:10:0:5::/64; absent while no lease is
	// held and unless the network runs IPv6.
	IPv6Subnet netip.Prefix `json:"ipv6Subnet,omitzero"`
	// Reserved is true when the lease is a reservation: a key with no TTL, never expiring.
	Reserved bool `json:"reserved"`
	// Expires is when the lease runs out unless renewed; zero for a reservation or when
	// unknown.
	Expires time.Time `json:"expires,omitzero"`
	// Renewed is the last successful renewal (or acquisition).
	Renewed time.Time `json:"renewed,omitzero"`
}

// Backend is the active backend and its device.
type Backend struct {
	// Type is the Backend.Type of the config, e.g. "vxlan", "host-gw", "udp".
	Type string `json:"type,omitempty"`
	// Active is true once the backend has been activated for the lease.
	Active bool `json:"active"`
	// Device is the backend's network device, e.g. "flannel.1" or "flannel0"; empty for
	// backends without one (host-gw).
	Device string `json:"device,omitempty"`
	// MTU is the MTU written to the subnet file (FLANNEL_MTU).
	MTU int `json:"mtu,omitempty"`
	// Info holds backend-specific facts by lowerCamel name, e.g. "vni": "1",
	// "port": "8472", "vtepMAC": "fa:a7:71:71:58:90".
	Info map[string]string `json:"info,omitempty"`
}

// PeerState says what the backend made of a peer's lease.
type PeerState string

// Peer states. Clients should print an unknown state as it is.
const (
	// PeerProgrammed: the kernel state for the peer (route, neighbour, fdb, peer entry)
	// is in place.
	PeerProgrammed PeerState = "programmed"
	// PeerError: programming the peer failed; Reason has the error. The backend retries.
	PeerError PeerState = "error"
	// PeerIgnored: the backend deliberately does not use the lease; Reason says why
	// (e.g. another BackendType, a PublicIP not on the local link for host-gw).
	PeerIgnored PeerState = "ignored"
)

// Peer is one other node's lease and what the backend did with it. An IPv6-only peer's
// Subnet and PublicIP are zero ("" in JSON); an IPv4-only peer has no IPv6 fields.
type Peer struct {
	Subnet   netip.Prefix `json:"subnet"`
	PublicIP netip.Addr   `json:"publicIP"`
	// IPv6Subnet and PublicIPv6 are the lease's IPv6 side (IPv6Subnet, PublicIPv6).
	IPv6Subnet  netip.Prefix `json:"ipv6Subnet,omitzero"`
	PublicIPv6  netip.Addr   `json:"publicIPv6,omitzero"`
	BackendType string       `json:"backendType,omitempty"` // as in the lease; empty for flannel's udp
	State       PeerState    `json:"state"`
	// Reason is the error (PeerError) or why the peer is ignored (PeerIgnored).
	Reason string `json:"reason,omitempty"`
	// Since is when State last changed.
	Since time.Time `json:"since,omitzero"`
}

// StateText is the state for people: "programmed", "error: <reason>", "ignored: <reason>".
func (p Peer) StateText() string {
	if p.Reason == "" {
		return string(p.State)
	}
	return string(p.State) + ": " + p.Reason
}
