// Package etcdv3 is the etcd v3 implementation of subnet.Registry, storing exactly what
// flanneld stores: the network config at <prefix>/config and one key per lease at
// <prefix>/subnets/<subnet key> whose value is the lease's JSON attributes.
//
// Every lease key carries its own etcd lease (granted with the lease TTL), whose ID is
// Lease.TTLID; a key with no etcd lease is a reservation (TTLID 0). Creates and updates are
// single transactions guarded by the key's create or modification revision, so two writers
// never both win; a create also loses to any other key holding its IPv4 subnet (in the
// transaction) or, created earlier, its IPv6 subnet (checked right after it; see
// CreateLease), because a dual-stack key names two subnets. Listing is one range request: the
// etcd lease ID comes with each key, so no TimeToLive request is made per lease (flanneld
// makes one per key).
//
// The package is storage only: it decides nothing about which subnet a node takes, and it
// logs only what the operator of the store connection needs (best-effort cleanups that
// failed, etcd client warnings). Malformed keys and values are reported to the caller, never
// fatal.
package etcdv3

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/subnet"
)

// DefaultPrefix is flannel's default etcd prefix.
const DefaultPrefix = "/coreos.com/network"

// DefaultDialTimeout bounds the first connection (and authentication) when Config leaves
// DialTimeout zero.
const DefaultDialTimeout = 5 * time.Second

// cleanupTimeout bounds best-effort revokes made after the caller's request is done.
const cleanupTimeout = 5 * time.Second

// Config says how to reach etcd and where weft's keys live. The field names follow
// flanneld's --etcd-* flags.
type Config struct {
	Endpoints []string // --etcd-endpoints; http://, https:// or host:port
	Prefix    string   // --etcd-prefix; DefaultPrefix when empty

	KeyFile  string // --etcd-keyfile: client key (PEM), with CertFile
	CertFile string // --etcd-certfile: client certificate (PEM), with KeyFile
	CAFile   string // --etcd-cafile: CA bundle (PEM) that signed the server certificate

	Username string // --etcd-username
	Password string // --etcd-password

	DialTimeout time.Duration // DefaultDialTimeout when zero
}

// Registry is a subnet.Registry backed by etcd v3. Its methods are safe for concurrent
// use. After Close, requests fail and watch channels close.
type Registry struct {
	client *clientv3.Client
	log    klog.Logger
	keys   Keys

	closeOnce sync.Once
	done      chan struct{} // closed by Close; watch goroutines stop delivering

	conn *connErrors // why requests last failed to reach etcd
}

var _ subnet.Registry = (*Registry)(nil)

// New connects to etcd. The connection is made lazily (requests wait for it, bounded by
// their context), except that with Username and Password the client authenticates here,
// bounded by DialTimeout. A missing or unreadable TLS file is an error naming the field
// and the path.
func New(cfg Config, log klog.Logger) (*Registry, error) {
	return newRegistry(cfg, log)
}

// newRegistry is New with extra gRPC dial options, for tests that observe the requests.
func newRegistry(cfg Config, log klog.Logger, dialOpts ...grpc.DialOption) (*Registry, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints configured (--etcd-endpoints)")
	}
	tlsCfg, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		for _, ep := range cfg.Endpoints {
			if strings.HasPrefix(ep, "http://") {
				log.Info("etcd endpoint is plain http: TLS files are not used for it", "endpoint", ep)
			}
		}
	}
	conn := &connErrors{}
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: timeout,
		TLS:         tlsCfg,
		Username:    cfg.Username,
		Password:    cfg.Password,
		// Keepalive pings notice an etcd that vanished without closing the connection
		// (a partition), which would otherwise leave the watches silent forever.
		// etcd refuses pings more frequent than every 5 s (--grpc-keepalive-min-time).
		DialKeepAliveTime:    keepAliveTime,
		DialKeepAliveTimeout: keepAliveTimeout,
		DialOptions: append([]grpc.DialOption{reconnectParams(timeout), grpc.WithChainUnaryInterceptor(conn.interceptor)},
			dialOpts...),
		Logger: zap.New(newZapCore(log.WithName("etcd-client"))),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return &Registry{
		client: client,
		log:    log,
		keys:   cfg.Keys(),
		done:   make(chan struct{}),
		conn:   conn,
	}, nil
}

// Connection upkeep. gRPC's default reconnect backoff grows to 120 s, so after a 30 s etcd
// outage a node could wait another 15 s before it even tried again; reconnectMaxDelay bounds
// that wait (a few connection attempts per second per node while etcd is down is cheap).
const (
	keepAliveTime     = 10 * time.Second
	keepAliveTimeout  = 5 * time.Second
	reconnectMaxDelay = 2 * time.Second
)

func reconnectParams(connectTimeout time.Duration) grpc.DialOption {
	return grpc.WithConnectParams(grpc.ConnectParams{
		Backoff: backoff.Config{
			BaseDelay:  250 * time.Millisecond,
			Multiplier: 1.6,
			Jitter:     0.2,
			MaxDelay:   reconnectMaxDelay,
		},
		MinConnectTimeout: connectTimeout,
	})
}

// Client returns the underlying etcd client, for tools (etcdctl-like inspection, tests).
// It is owned by the Registry: do not close it.
func (r *Registry) Client() *clientv3.Client { return r.client }

// Prefix returns the normalized key prefix, e.g. /coreos.com/network.
func (r *Registry) Prefix() string { return r.keys.Prefix }

// Keys returns the key layout the registry reads and writes.
func (r *Registry) Keys() Keys { return r.keys }

// Close closes the etcd client. Watch channels close without delivering anything more.
// Calling Close again does nothing and returns nil.
func (r *Registry) Close() error {
	var err error
	r.closeOnce.Do(func() {
		close(r.done)
		err = r.client.Close()
	})
	return err
}

// ErrClosed is wrapped by the errors of requests made after Close. It is net.ErrClosed, so
// callers may check either.
var ErrClosed = net.ErrClosed

// checkOpen fails fast after Close, instead of letting the etcd client retry on a closing
// connection until the caller's deadline.
func (r *Registry) checkOpen(op string) error {
	select {
	case <-r.done:
		return fmt.Errorf("%s: etcd registry: %w", op, ErrClosed)
	default:
		return nil
	}
}

// leaseKey returns the full etcd key of a lease key such as 10.244.5.0-24.
func (r *Registry) leaseKey(k string) string { return r.keys.Lease(k) }
