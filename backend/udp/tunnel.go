package udp

import "github.com/weftnet/weft/backend"

var _ backend.Tunnel = (*udpNetwork)(nil)

// TunnelPort is the UDP port peers' datagrams arrive on, for the firewall's INPUT rules.
func (n *udpNetwork) TunnelPort() (string, int) { return "udp", int(n.listen.Port()) }
