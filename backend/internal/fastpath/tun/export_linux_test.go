//go:build linux

package tun

// CheckAt exposes checkAt to the external tests.
var CheckAt = checkAt
