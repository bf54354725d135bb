package cluster

import (
	"context"
	"fmt"
	"net"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/weftnet/weft/pkg/etcdtest"
	"github.com/weftnet/weft/pkg/nsutil"
)

// EtcdEndpoint is etcd's client URL as weftd sees it from a node: http://192.0.2.254:2379.
func (c *Cluster) EtcdEndpoint() string { return c.etcd.Endpoint() }

// EtcdServer is the etcd server, for outage tests (Stop, then Start again on the same data).
func (c *Cluster) EtcdServer() *etcdtest.Server { return c.etcd }

// Prefix is the etcd key prefix in use (Options.EtcdPrefix or DefaultPrefix).
func (c *Cluster) Prefix() string {
	if c.opts.EtcdPrefix != "" {
		return c.opts.EtcdPrefix
	}
	return DefaultPrefix
}

// Etcd returns a client for the cluster's etcd, usable from the root namespace: every
// connection it makes is dialled inside the hub namespace. ctx bounds a first status check;
// the caller closes the client.
func (c *Cluster) Etcd(ctx context.Context) (*clientv3.Client, error) {
	hub := c.hub
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var conn net.Conn
		err := nsutil.Do(hub, func() error {
			var d net.Dialer
			var err error
			conn, err = d.DialContext(ctx, "tcp", addr)
			return err
		})
		return conn, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{c.EtcdEndpoint()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		// clientv3 appends DialOptions after its own, so this dialer replaces the default.
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial)},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", c.EtcdEndpoint(), err)
	}
	if _, err := cli.Status(ctx, c.EtcdEndpoint()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd at %s (via %s): %w", c.EtcdEndpoint(), hub, err)
	}
	return cli, nil
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
