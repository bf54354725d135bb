package udp

import (
	"net"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/fastpath/dgram"
)

// DeviceName is the TUN device, named as flanneld names it.
const DeviceName = "flannel0"

// errPrefix starts the udp backend's error messages.
const errPrefix = "udp backend"

// setSocketBuffers enlarges the socket's buffers (dgram.EnlargeBuffers); a failure
// is logged only.
func setSocketBuffers(sock *net.UDPConn, log klog.Logger) {
	if err := dgram.EnlargeBuffers(sock); err != nil {
		log.Info("Could not enlarge the UDP socket buffers", "err", err)
	}
}
