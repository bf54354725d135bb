package etcdv3_test

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcdv3"
	"github.com/weftnet/weft/test/etcdtest"
)

// Values exactly as flanneld v0.28 writes them (see FLANNEL-COMPAT.md).
var flannelValues = map[string]string{
	"udp":     `{"PublicIP":"192.0.2.1","PublicIPv6":null}`,
	"vxlan":   `{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}}`,
	"host-gw": `{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"host-gw"}`,
}

func TestFlannelByteCompatibility(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)
	third := map[string]int{"udp": 1, "vxlan": 2, "host-gw": 3}
	ids := map[string]int64{}
	for name, v := range flannelValues {
		// As flanneld writes it: the key attached to a 24 h etcd lease.
		id := mustGrant(t, e)
		ids[name] = id
		e.rawPut(t, leaseKey("10.244."+strconv.Itoa(third[name])+".0-24"), v, clientv3.WithLease(clientv3.LeaseID(id)))
	}
	list, err := e.reg.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Leases) != len(flannelValues) || len(list.Malformed) != 0 {
		t.Fatalf("list %+v, want the %d flanneld leases", list, len(flannelValues))
	}
	for _, l := range list.Leases {
		name := ""
		for n, x := range third {
			if l.Subnet == sn("10.244."+strconv.Itoa(x)+".0/24") {
				name = n
			}
		}
		if l.TTLID != ids[name] {
			t.Errorf("%s lease TTLID %x, want flanneld's etcd lease %x", name, l.TTLID, ids[name])
		}

		// What weft writes for the same attributes is byte-identical, by create and by update.
		x := third[name]
		created, err := e.reg.CreateLease(ctx, sn("10.244."+strconv.Itoa(100+x)+".0/24"), netip.Prefix{}, l.Attrs, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if v, _, _ := e.rawGet(t, leaseKey("10.244."+strconv.Itoa(100+x)+".0-24")); v != flannelValues[name] {
			t.Errorf("%s: weft created %s, flanneld wrote %s", name, v, flannelValues[name])
		}
		if !created.Attrs.Equal(l.Attrs) {
			t.Errorf("%s: created attrs %+v differ from listed %+v", name, created.Attrs, l.Attrs)
		}
		if _, err := e.reg.UpdateLease(ctx, l, l.Attrs, time.Hour); err != nil {
			t.Fatal(err)
		}
		if v, _, _ := e.rawGet(t, leaseKey("10.244."+strconv.Itoa(x)+".0-24")); v != flannelValues[name] {
			t.Errorf("%s: weft rewrote flanneld's value as %s", name, v)
		}
	}
}

func TestDefaultPrefix(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t, etcdtest.Options{})
	reg, err := etcdv3.New(etcdv3.Config{Endpoints: []string{srv.Endpoint()}}, ktesting.NewLogger(t, ktesting.NewConfig()))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if reg.Prefix() != "/coreos.com/network" {
		t.Fatalf("default prefix %q", reg.Prefix())
	}
	ctx := ctxT(t)
	if _, err := reg.CreateLease(ctx, sn("10.244.78.0/24"), netip.Prefix{}, attrs("192.0.2.2"), time.Hour); err != nil {
		t.Fatal(err)
	}
	resp, err := reg.Client().Get(ctx, "/coreos.com/network/subnets/10.244.78.0-24")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("flannel's key not written: %v %v", resp, err)
	}
}

// rpcLog records the gRPC methods a client calls (each retry counts), unary and streaming.
type rpcLog struct {
	mu    sync.Mutex // guards calls
	calls []string
}

func (c *rpcLog) add(m string) { c.mu.Lock(); c.calls = append(c.calls, m); c.mu.Unlock() }

func (c *rpcLog) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	return out
}

func (c *rpcLog) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			c.add(method)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			c.add(method)
			return streamer(ctx, desc, cc, method, opts...)
		}),
	}
}

// TestListIsOneRequest counts the RPCs that ListLeases makes over a store of many TTL
// leases and reservations: one Range, no TimeToLive (flanneld asks one per key).
func TestListIsOneRequest(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)
	var rpcs rpcLog
	reg, err := etcdv3.NewWithDialOptions(etcdv3.Config{Endpoints: []string{e.srv.Endpoint()}, Prefix: testPrefix},
		ktesting.NewLogger(t, ktesting.NewConfig()), rpcs.dialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	const n = 40
	var withTTL subnet.Lease
	for i := range n {
		ttl := time.Hour
		if i%4 == 0 {
			ttl = 0
		}
		l, err := reg.CreateLease(ctx, sn("10.244."+strconv.Itoa(i+1)+".0/24"), netip.Prefix{}, attrs("192.0.2.1"), ttl)
		if err != nil {
			t.Fatal(err)
		}
		if ttl > 0 {
			withTTL = l
		}
	}
	if calls := rpcs.take(); !slices.Contains(calls, "/etcdserverpb.Lease/LeaseGrant") || !slices.Contains(calls, "/etcdserverpb.KV/Txn") {
		t.Fatalf("creates made %v: the interceptor does not see the client's requests", calls)
	}

	list, err := reg.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	calls := rpcs.take()
	if len(list.Leases) != n {
		t.Fatalf("listed %d leases, want %d", len(list.Leases), n)
	}
	if !slices.Equal(calls, []string{"/etcdserverpb.KV/Range"}) {
		t.Fatalf("ListLeases made %v, want exactly one Range", calls)
	}
	for _, l := range list.Leases {
		if l.Reserved() != (l.Subnet.Addr().As4()[2]%4 == 1) {
			t.Fatalf("lease %v: TTLID %x does not match how it was created", l.Subnet, l.TTLID)
		}
	}

	// The same counter sees a renewal's keep-alive stream and its one read.
	if _, err := reg.RenewLease(ctx, withTTL); err != nil {
		t.Fatal(err)
	}
	if calls := rpcs.take(); !slices.Equal(calls, []string{"/etcdserverpb.Lease/LeaseKeepAlive", "/etcdserverpb.KV/Range"}) {
		t.Fatalf("RenewLease made %v, want one keep-alive and one Range", calls)
	}
}
