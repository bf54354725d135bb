package etcdv3_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestWatchEndsWhenEtcdStaysDown: an etcd that stays unreachable ends a lease watch with an
// error (after a grace period that a quick restart stays within, see
// TestWatchSurvivesEtcdRestart), so that the caller can say so and list again once etcd is
// back; a request that times out meanwhile says why it could not reach etcd.
func TestWatchEndsWhenEtcdStaysDown(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)
	a, err := e.reg.CreateLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}, attrs("192.0.2.1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ch := e.reg.WatchLeases(ctx, a.Revision)
	e.srv.Stop()
	stopped := time.Now()
	b := next(t, ch, 20*time.Second)
	if b.Err == nil || !strings.Contains(b.Err.Error(), "etcd unreachable") {
		t.Fatalf("watch delivered %+v, want an \"etcd unreachable\" error", b)
	}
	// Not before the grace period (a restart within it keeps the watch); how long after it
	// is logged, not checked: a loaded machine may take longer.
	d := time.Since(stopped)
	t.Logf("the watch ended %v after etcd stopped (grace period 5 s)", d.Round(time.Millisecond))
	if d < 4*time.Second {
		t.Errorf("the watch ended %v after etcd stopped, before the 5 s grace period", d)
	}
	closed(t, ch, 5*time.Second)

	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = e.reg.ListLeases(short)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("list while etcd is down: %v, want a timeout naming the refused connection", err)
	}
}
