package vxlan

// needTxChecksumOff decides whether to switch off transmit checksum offload on the VXLAN
// device. Kernels before 5.7 compute a wrong UDP checksum for VXLAN packets whose outer
// header is rewritten by SNAT with --random-fully (kube-proxy and weft's masquerade rules
// use it), and the receiving node drops them. An explicit ChecksumOffload setting wins:
// true keeps the offload, false switches it off. It is pure.
func needTxChecksumOff(kernelMajor, kernelMinor int, override *bool) bool {
	if override != nil {
		return !*override
	}
	return kernelMajor < 5 || (kernelMajor == 5 && kernelMinor < 7)
}
