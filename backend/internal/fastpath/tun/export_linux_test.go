//go:build linux

package tun

// CheckAt exposes checkAt to the external tests.
var CheckAt = checkAt

// Detached exposes detached to the external tests.
func (t *Device) Detached() bool { return t.detached() }
