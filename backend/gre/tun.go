package gre

// TUNName is the TUN device of userspace mode.
const TUNName = "weft-gre0"

// errPrefix starts the gre backend's error messages.
const errPrefix = "gre backend"
