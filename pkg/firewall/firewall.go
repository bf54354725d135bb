// Package firewall is the contract between the daemon and weft's packet-filter rules, and
// the plan those rules follow whichever tool writes them.
//
// It owns three things: the Firewall interface the daemon drives; the rule plan (Desired:
// which of weft's three rule groups to keep, remove or leave alone, and Rules: the rules of
// each, in order, as data); and what both implementations share around it (the inputs the
// setters fill, the resync loop). It touches no kernel state itself. The implementations,
// each in a package of its own, render the plan for one tool:
//
//	firewall/iptables   chains WEFT-POSTRTG, WEFT-FWD, WEFT-INPUT and the ipset weft-peers
//	                    through iptables, the same chains and the ipset weft-peers6 through
//	                    ip6tables (legacy or nft, as the host uses)
//	firewall/nftables   the tables "ip weft" and "ip6 weft", each with a chain per group and
//	                    the set @peers, through netlink (no nft binary)
//
// Every rule group is kept per IP family (Family): the IPv4 rules exist only while the
// network runs IPv4, the IPv6 ones only while it runs IPv6, as flanneld keeps its iptables
// and ip6tables rules for dual-stack and IPv6-only networks.
//
// The daemon picks one from the network config's EnableNFTables and hands it the other as
// Options.Replaces, so switching modes removes what the old mode left.
package firewall

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Firewall keeps weft's rules in the kernel: flanneld's masquerade rules, the overlay's
// forward rules and the tunnel-port rules that admit the peers.
//
// The setters may be called from any goroutine at any time; each wakes Run for a prompt
// pass over what it changed. Until SetNetwork is called the rules of a previous run are
// left as they are, and until SetTunnelPort is called too the tunnel rules are, so that a
// restart keeps traffic flowing until the new rules are known.
//
// Run, Sync and Cleanup change the kernel of the network namespace of the calling
// goroutine's thread, and start no goroutine that would run elsewhere. Passes are
// serialised; do not run two Runs of one Firewall at once.
type Firewall interface {
	// SetNetwork sets the overlay network and this node's subnet of each family the
	// network runs (Overlay). The rules of a family the network does not run are removed;
	// a prefix of the wrong family, or a subnet outside its network, makes Sync report an
	// ErrInvalid error and leaves that family's rules as they are. An Overlay with no
	// prefix at all counts as not set.
	SetNetwork(o Overlay)
	// SetTunnelPort sets the encapsulation the tunnel rules of every family match:
	// TunnelUDP with a port, or TunnelGRE (port ignored). An empty proto means the backend
	// has no tunnel and the tunnel rules are removed. Other values make Sync report an
	// ErrInvalid error.
	SetTunnelPort(proto string, port int)
	// SetTunnelPortV6 sets the UDP port the IPv6 tunnel rules match when it differs from
	// SetTunnelPort's (wireguard's Mode separate); 0 means SetTunnelPort's. Call it before
	// SetTunnelPort, which it does not make known on its own.
	SetTunnelPortV6(port int)
	// SetPeers sets the public addresses of the current peers, of both families, the
	// sources the tunnel rules admit: each family's tunnel rules admit the addresses of
	// that family (a 4-in-6 mapped address is IPv4). Order and duplicates do not matter.
	SetPeers(publicIPs []netip.Addr)
	// Run makes a full pass at once and every Options.Resync, and a pass over what
	// changed soon after each setter call, until ctx ends; it then returns nil. Failed
	// passes are logged and retried; Run returns an error only if it cannot run at all.
	Run(ctx context.Context) error
	// Sync makes one full pass now and returns every failure.
	Sync() error
	// Cleanup removes everything the Firewall owns. It is not for an ordinary stop (rules
	// left in place keep traffic flowing while weft restarts). Call it after Run returned.
	Cleanup() error
}

// Cleaner removes what one mode of the firewall owns: the other implementation's Cleanup,
// for a switch of modes.
type Cleaner interface {
	Cleanup() error
}

// Options says which rules weft keeps; both implementations take it.
type Options struct {
	// IPMasq keeps flanneld's masquerade rules (--ip-masq). When false, masquerade rules
	// left by an earlier run are removed.
	IPMasq bool
	// DisableFullyRandom masquerades without fully random source ports
	// (--ip-masq-fully-random-disable). Without it they are fully random where the kernel
	// and tools support it, as flanneld does.
	DisableFullyRandom bool
	// ForwardRules keeps the forward ACCEPT rules for the overlay network
	// (--iptables-forward-rules). When false, rules left by an earlier run are removed.
	ForwardRules bool
	// RestrictTunnelPort ends the tunnel rules with a DROP of tunnel traffic from anyone
	// but the current peers (--restrict-tunnel-port).
	RestrictTunnelPort bool
	// Resync is the period of Run's full pass (--iptables-resync); DefaultResync when zero
	// or negative.
	Resync time.Duration
	// OnRepair, if set, is called when a pass puts back rules, sets or tables that were in
	// place and were deleted or changed by someone else (not for changes weft asked for).
	OnRepair func()
	// Replaces, if set, is the other mode's firewall: Run calls its Cleanup after each pass
	// until it succeeds once, so that a switch of modes leaves nothing of the old one.
	Replaces Cleaner
}

// DefaultResync is the resync period when Options.Resync is not set (flanneld's
// --iptables-resync default).
const DefaultResync = 5 * time.Second

// Tunnel protocols accepted by SetTunnelPort.
const (
	TunnelUDP = "udp"
	TunnelGRE = "gre"
)

// ErrInvalid is wrapped by errors about inputs the rules cannot be built from.
var ErrInvalid = errors.New("invalid firewall input")

// WithDefaults returns o with the zero Resync replaced by DefaultResync.
func (o Options) WithDefaults() Options {
	if o.Resync <= 0 {
		o.Resync = DefaultResync
	}
	return o
}
