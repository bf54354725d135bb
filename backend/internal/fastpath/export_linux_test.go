//go:build linux

package fastpath

// CheckTUNAt exposes checkTUNAt to the external tests.
var CheckTUNAt = checkTUNAt
