package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// connErrors remembers why requests last failed to reach etcd. The etcd client turns a
// request that timed out waiting for a connection into a bare "context deadline exceeded",
// dropping gRPC's reason (a refused connection, a TLS certificate etcd or we rejected);
// the Registry adds it back to the errors it returns, so that the operator reads why.
type connErrors struct {
	mu  sync.Mutex // guards msg and at
	msg string     // gRPC's message, e.g. `latest balancer error: connection error: ...`
	at  time.Time
}

// connReasonTTL is how long a recorded reason is attached to timeouts.
const connReasonTTL = time.Minute

// interceptor records the connection error of each failed attempt of a unary request. It
// runs inside the etcd client's retry interceptor, so it sees gRPC's own errors.
func (c *connErrors) interceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if st, ok := status.FromError(err); ok && err != nil {
		msg := st.Message()
		if st.Code() == codes.Unavailable || strings.Contains(msg, "connection error") || strings.Contains(msg, "balancer error") {
			c.mu.Lock()
			c.msg, c.at = msg, time.Now()
			c.mu.Unlock()
		}
	}
	return err
}

// explain returns err with the last connection error added when err is a timeout or a
// cancellation and that error is recent; err otherwise. errors.Is still sees err.
func (c *connErrors) explain(err error) error {
	if err == nil || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return err
	}
	c.mu.Lock()
	msg, at := c.msg, c.at
	c.mu.Unlock()
	if msg == "" || time.Since(at) > connReasonTTL {
		return err
	}
	return fmt.Errorf("%w (last etcd connection error: %s)", err, msg)
}
