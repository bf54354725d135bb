package etcdv3

// NewWithDialOptions exposes newRegistry to the external tests, which count the requests
// the client makes through a gRPC interceptor.
var NewWithDialOptions = newRegistry
