package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcdv3"
	"github.com/weftnet/weft/subnet/subnettest"
)

// TestCommandsOverTheContract runs the etcd commands over the in-memory registry: they
// need nothing from the store but the subnet.Registry contract.
func TestCommandsOverTheContract(t *testing.T) {
	reg := subnettest.New()
	var out, errOut strings.Builder
	c := &cli{opts: &options{output: outputJSON, timeout: 10 * time.Second}, stdout: &out, stderr: &errOut,
		reg: reg, keys: etcdv3.NewKeys("")}
	ctx := context.Background()
	do := func(run func(context.Context, *cli, []string) error, args ...string) string {
		t.Helper()
		out.Reset()
		if err := run(ctx, c, args); err != nil {
			t.Fatalf("%v: %v (stderr %s)", args, err, errOut.String())
		}
		return out.String()
	}

	c.stdin = strings.NewReader(hostGWConfig)
	do(runConfigSet, "-")
	if raw, _, _ := reg.GetConfig(ctx); string(raw) != hostGWConfig {
		t.Fatalf("config %q", raw)
	}
	l, err := reg.CreateLease(ctx, pfx("10.244.9.0/24"), netip.Prefix{}, subnet.LeaseAttrs{PublicIP: addr("192.0.2.9")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var rr reserveResult
	if err := json.Unmarshal([]byte(do(runReserve, "10.244.9.0/24", "192.0.2.9")), &rr); err != nil || rr.Action != reserveConverted ||
		rr.Key != "/coreos.com/network/subnets/10.244.9.0-24" {
		t.Fatalf("reserve: %+v %v", rr, err)
	}
	if _, err := reg.RenewLease(ctx, l); err != nil {
		t.Errorf("the node's renewal after reserve: %v", err)
	}
	var lr leasesResult
	if err := json.Unmarshal([]byte(do(runLeases)), &lr); err != nil || len(lr.Leases) != 1 || !lr.Leases[0].Reserved {
		t.Fatalf("leases: %+v %v", lr, err)
	}
	var ur unreserveResult
	if err := json.Unmarshal([]byte(do(runUnreserve, "10.244.9.0/24")), &ur); err != nil || !ur.Reservation || ur.Revision == 0 {
		t.Fatalf("unreserve: %+v %v", ur, err)
	}
	if list, _ := reg.ListLeases(ctx); len(list.Leases) != 0 {
		t.Errorf("leases left: %+v", list.Leases)
	}
}
