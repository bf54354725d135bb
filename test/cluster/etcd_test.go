package cluster

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

func TestThreeEtcdMembers(t *testing.T) {
	c := New(t, Options{Nodes: 1, EtcdMembers: 3, WeftdPath: fakeWeftdPath})
	eps := c.EtcdEndpoints()
	want := []string{"http://192.0.2.254:2379", "http://192.0.2.254:12379", "http://192.0.2.254:22379"}
	if !slices.Equal(eps, want) {
		t.Fatalf("EtcdEndpoints = %v, want %v", eps, want)
	}
	w := c.StartNode(0)
	if args := strings.Join(w.Args(), " "); !strings.Contains(args, "--etcd-endpoints "+strings.Join(want, ",")) {
		t.Errorf("weftd is not given every endpoint: %s", args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := c.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	leader, err := c.EtcdCluster().LeaderIndex(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	// With the leader down, the harness still reaches etcd and writes (2 of 3 members),
	// once they have elected another leader.
	c.EtcdCluster().Member(leader).Stop()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, lerr := c.EtcdCluster().LeaderIndex(ctx, cli)
		if lerr == nil {
			if err = c.TryPutConfig(hostGW); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write with 2 of 3 members within 20s: %v %v", lerr, err)
		}
	}
	if err := c.EtcdCluster().Member(leader).Start(); err != nil {
		t.Fatal(err)
	}
}

func TestEtcdTLSCluster(t *testing.T) {
	c := New(t, Options{Nodes: 1, EtcdTLS: true, WeftdPath: fakeWeftdPath})
	if got := c.EtcdEndpoint(); got != "https://192.0.2.254:2379" {
		t.Fatalf("EtcdEndpoint = %s", got)
	}
	c.PutConfig(hostGW) // the harness presents its own client certificate
	pki := c.EtcdPKI()
	if pki == nil {
		t.Fatal("no PKI")
	}
	// A client with the CA but no certificate is refused (etcd runs with --client-cert-auth).
	tlsCfg, err := pki.ClientTLS("", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.EtcdEndpoints(), TLS: tlsCfg, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(c.hubDialer())}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
	defer gcancel()
	_, getErr := cli.Get(gctx, "/x")
	if getErr == nil {
		t.Error("a client without a certificate read from etcd")
	}
}
