package etcdv3_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcdv3"
	"github.com/weftnet/weft/test/etcdtest"
)

// testPrefix is not flannel's default, so that the tests prove the prefix is honoured.
const testPrefix = "/weft-test/network"

type env struct {
	srv *etcdtest.Server
	reg *etcdv3.Registry
	cli *clientv3.Client // the registry's own client, for raw reads and writes
}

// setup starts a fresh etcd on loopback and a registry on it.
func setup(t *testing.T) env {
	t.Helper()
	srv := etcdtest.Start(t, etcdtest.Options{})
	reg := newReg(t, srv)
	return env{srv: srv, reg: reg, cli: reg.Client()}
}

func newReg(t *testing.T, srv *etcdtest.Server) *etcdv3.Registry {
	t.Helper()
	reg, err := etcdv3.New(etcdv3.Config{Endpoints: []string{srv.Endpoint()}, Prefix: testPrefix + "/"}, ktesting.NewLogger(t, ktesting.NewConfig()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func sn(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func attrs(pub string) subnet.LeaseAttrs {
	return subnet.LeaseAttrs{
		PublicIP:    netip.MustParseAddr(pub),
		BackendType: "vxlan",
		BackendData: []byte(`{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}`),
	}
}

func leaseKey(s string) string { return testPrefix + "/subnets/" + s }

// rawGet reads one key directly; ok is false when it is absent.
func (e env) rawGet(t *testing.T, key string) (value string, leaseID int64, ok bool) {
	t.Helper()
	resp, err := e.cli.Get(ctxT(t), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return "", 0, false
	}
	return string(resp.Kvs[0].Value), resp.Kvs[0].Lease, true
}

func (e env) rawPut(t *testing.T, key, value string, opts ...clientv3.OpOption) int64 {
	t.Helper()
	resp, err := e.cli.Put(ctxT(t), key, value, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// leaseAlive reports whether etcd still knows the etcd lease id.
func (e env) leaseAlive(t *testing.T, id int64) bool {
	t.Helper()
	resp, err := e.cli.TimeToLive(ctxT(t), clientv3.LeaseID(id))
	if err != nil {
		t.Fatal(err)
	}
	return resp.TTL > 0
}

// etcdLeaseCount is how many etcd leases exist, to catch grants that were never revoked.
func (e env) etcdLeaseCount(t *testing.T) int {
	t.Helper()
	resp, err := e.cli.Leases(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Leases)
}

// next receives one batch or fails after timeout.
func next(t *testing.T, ch <-chan subnet.WatchBatch, timeout time.Duration) subnet.WatchBatch {
	t.Helper()
	select {
	case b, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed unexpectedly")
		}
		return b
	case <-time.After(timeout):
		t.Fatalf("no watch batch within %v", timeout)
	}
	return subnet.WatchBatch{}
}

// collect receives batches until it has n events (and fails on an error batch), bounded
// by timeout; Malformed entries are gathered too.
func collect(t *testing.T, ch <-chan subnet.WatchBatch, n int, timeout time.Duration) ([]subnet.Event, []subnet.Malformed) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var evs []subnet.Event
	var bad []subnet.Malformed
	for len(evs) < n {
		b := next(t, ch, time.Until(deadline))
		if b.Err != nil {
			t.Fatalf("watch error: %v", b.Err)
		}
		if b.Revision == 0 {
			t.Fatal("batch without revision")
		}
		evs = append(evs, b.Events...)
		bad = append(bad, b.Malformed...)
	}
	return evs, bad
}

// closed waits for ch to close, draining it, bounded by timeout.
func closed[T any](t *testing.T, ch <-chan T, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("channel not closed within %v", timeout)
		}
	}
}

// mustGrant grants an etcd lease of an hour that no key uses.
func mustGrant(t *testing.T, e env) int64 {
	t.Helper()
	resp, err := e.cli.Grant(ctxT(t), 3600)
	if err != nil {
		t.Fatal(err)
	}
	return int64(resp.ID)
}
