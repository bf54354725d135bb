package vxlan

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/weftnet/weft/subnet"
)

// vtepMAC derives the device's MAC from the public IP and the VNI: the same on every start
// and after the device is re-created, so peers' neighbour and FDB entries stay valid. It is
// a locally administered unicast address. It is pure.
func vtepMAC(publicIP netip.Addr, vni int) net.HardwareAddr {
	var in bytes.Buffer
	in.WriteString("weft vxlan vtep mac\x00")
	in.Write(publicIP.AsSlice())
	_ = binary.Write(&in, binary.BigEndian, uint32(vni))
	sum := sha256.Sum256(in.Bytes())
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02 // unicast, locally administered
	return mac
}

// leaseVNI is the VNI as flanneld writes it into lease data: it stores a uint16, and
// flanneld peers cannot decode a larger number, so larger VNIs are written truncated as
// flanneld does.
func leaseVNI(vni int) int { return int(uint16(vni)) }

// marshalLeaseData returns the BackendData bytes exactly as flanneld writes them:
// {"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}.
func marshalLeaseData(vni int, mac net.HardwareAddr) json.RawMessage {
	return json.RawMessage(`{"VNI":` + strconv.Itoa(leaseVNI(vni)) + `,"VtepMAC":` + strconv.Quote(mac.String()) + `}`)
}

// peerData is what a peer publishes in its BackendData.
type peerData struct {
	VNI int
	MAC net.HardwareAddr
}

// checkPeerData is the vxlan Type's CheckPeerData: a peer lease is admitted only when the
// backend data of each family it has carries a VTEP MAC (and, if any, a VNI) that
// parseLeaseData accepts: BackendV6Data when it names a PublicIPv6, BackendData when it
// names an IPv4 PublicIP (not flanneld's "0.0.0.0" of an IPv6-only lease) or no IPv6
// address at all. It sees only the attributes, not the lease's subnets, so the families
// are read from the public addresses. It is pure.
func checkPeerData(attrs subnet.LeaseAttrs) error {
	has6 := attrs.PublicIPv6.IsValid()
	has4 := (attrs.PublicIP.IsValid() && !attrs.PublicIP.IsUnspecified()) || !has6
	if has4 {
		if _, err := parseLeaseData(attrs.BackendData); err != nil {
			return err
		}
	}
	if has6 {
		if _, err := parseLeaseDataOf("BackendV6Data", attrs.BackendV6Data); err != nil {
			return err
		}
	}
	return nil
}

// parseLeaseData decodes a peer's BackendData, accepting what flanneld and weft write. The
// MAC must be a 6-byte unicast address other than zero.
func parseLeaseData(raw json.RawMessage) (peerData, error) {
	return parseLeaseDataOf("BackendData", raw)
}

// parseLeaseDataOf is parseLeaseData for the lease field named field (BackendData or
// BackendV6Data, which have the same form), which errors name.
func parseLeaseDataOf(field string, raw json.RawMessage) (peerData, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return peerData{}, fmt.Errorf("no %s", field)
	}
	var d struct {
		VNI     *json.Number
		VtepMAC *string
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return peerData{}, fmt.Errorf("%s %s: %w", field, raw, err)
	}
	if d.VtepMAC == nil {
		return peerData{}, fmt.Errorf("%s %s has no VtepMAC", field, raw)
	}
	mac, err := net.ParseMAC(*d.VtepMAC)
	if err != nil || len(mac) != 6 {
		return peerData{}, fmt.Errorf("%s VtepMAC %q is not a MAC address", field, *d.VtepMAC)
	}
	if mac[0]&0x01 != 0 || bytes.Equal(mac, make([]byte, 6)) {
		return peerData{}, fmt.Errorf("%s VtepMAC %s is not a unicast address", field, mac)
	}
	var vni int64
	if d.VNI != nil {
		if vni, err = d.VNI.Int64(); err != nil || vni < 0 || vni > maxVNI {
			return peerData{}, fmt.Errorf("%s VNI %s is not a VNI", field, d.VNI)
		}
	}
	return peerData{VNI: int(vni), MAC: mac}, nil
}
