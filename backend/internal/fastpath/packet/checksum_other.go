//go:build !amd64

package packet

// useVector is false: there is no vector sum on this architecture.
var useVector = false

const (
	vectorMinLen = 256
	vectorMaxLen = 1 << 20
)

// sumVector is never called here (useVector is false).
func sumVector([]byte) uint64 { panic("fastpath: no vector checksum on this architecture") }
