package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/etcdtest"
)

// EtcdEndpoint is the first etcd member's client URL as weftd sees it from a node:
// http://192.0.2.254:2379 (https:// with Options.EtcdTLS).
func (c *Cluster) EtcdEndpoint() string { return c.etcd.Member(0).Endpoint() }

// EtcdEndpoints are every etcd member's client URLs, in member order.
func (c *Cluster) EtcdEndpoints() []string { return c.etcd.Endpoints() }

// EtcdServer is the first etcd member, for outage tests (Stop, then Start again on the same
// data). With one member it is the whole store.
func (c *Cluster) EtcdServer() *etcdtest.Server { return c.etcd.Member(0) }

// EtcdCluster is the etcd cluster (one member unless Options.EtcdMembers), for leader-loss
// and quorum-loss tests.
func (c *Cluster) EtcdCluster() *etcdtest.Cluster { return c.etcd }

// EtcdPKI is the certificate authority etcd's TLS comes from (nil without Options.EtcdTLS):
// its CAFile verifies etcd, ClientCert makes client certificates for weftd, OtherCAFile is
// a CA that did not sign etcd's certificate.
func (c *Cluster) EtcdPKI() *etcdtest.PKI { return c.pki }

// SetEtcdCredentials makes the harness's etcd clients (Etcd, PutConfig) authenticate with
// a username and password from now on, for tests that enable etcd's auth; empty strings
// turn that off again.
func (c *Cluster) SetEtcdCredentials(user, password string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.etcdUser, c.etcdPass = user, password
}

// Prefix is the etcd key prefix in use (Options.EtcdPrefix or DefaultPrefix).
func (c *Cluster) Prefix() string {
	if c.opts.EtcdPrefix != "" {
		return c.opts.EtcdPrefix
	}
	return DefaultPrefix
}

// Etcd returns a client for the cluster's etcd (every member), usable from the root
// namespace: every connection it makes is dialled inside the hub namespace. ctx bounds a
// first status check, which one member must answer; the caller closes the client.
func (c *Cluster) Etcd(ctx context.Context) (*clientv3.Client, error) {
	hub := c.hub
	dial := c.hubDialer()
	c.mu.Lock()
	user, pass := c.etcdUser, c.etcdPass
	c.mu.Unlock()
	cfg := clientv3.Config{
		Endpoints:   c.EtcdEndpoints(),
		DialTimeout: 5 * time.Second,
		Username:    user,
		Password:    pass,
		Logger:      zap.NewNop(),
		// clientv3 appends DialOptions after its own, so this dialer replaces the default.
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial)},
	}
	if c.pki != nil {
		var err error
		if cfg.TLS, err = c.pki.ClientTLS(c.rootCert[0], c.rootCert[1]); err != nil {
			return nil, fmt.Errorf("etcd client TLS: %w", err)
		}
	}
	eps := strings.Join(c.EtcdEndpoints(), ",")
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", eps, err)
	}
	var errs []error
	for _, ep := range c.EtcdEndpoints() {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := cli.Status(sctx, ep)
		cancel()
		if err == nil {
			return cli, nil
		}
		errs = append(errs, err)
	}
	cli.Close()
	return nil, fmt.Errorf("etcd at %s (via %s): %w", eps, hub, errors.Join(errs...))
}

// hubDialer returns a gRPC dialer whose connections are made inside the hub namespace.
func (c *Cluster) hubDialer() func(ctx context.Context, addr string) (net.Conn, error) {
	hub := c.hub
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var conn net.Conn
		err := nsutil.Do(hub, func() error {
			var d net.Dialer
			var err error
			conn, err = d.DialContext(ctx, "tcp", addr)
			return err
		})
		return conn, err
	}
}

// TryPutConfig writes the network configuration JSON to <prefix>/config.
func (c *Cluster) TryPutConfig(json string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cli, err := c.Etcd(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, c.Prefix()+"/config", json); err != nil {
		return fmt.Errorf("put %s/config: %w", c.Prefix(), err)
	}
	return nil
}

// PutConfig is TryPutConfig, fatal on error.
func (c *Cluster) PutConfig(json string) {
	if c.t != nil {
		c.t.Helper()
	}
	if err := c.TryPutConfig(json); err != nil {
		c.fatal(err)
	}
}
