package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/pkg/firewall/iptables"
	"github.com/weftnet/weft/pkg/firewall/nftables"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/subnettest"
)

// hangingRegistry is a store that never answers a list (etcd unreachable, or a TLS handshake
// that never completes), until the caller gives up.
type hangingRegistry struct{ *subnettest.Registry }

func (hangingRegistry) ListLeases(ctx context.Context) (subnet.LeaseList, error) {
	<-ctx.Done()
	return subnet.LeaseList{}, ctx.Err()
}

// An acquisition that the store does not answer is bounded: the reason reaches the log and
// /readyz's last error while weftd keeps trying.
func TestAcquireIsBounded(t *testing.T) {
	logger, _ := ktesting.NewTestContext(t)
	d := New(Config{}, logger)
	d.acquireTimeout = 50 * time.Millisecond
	cfg, err := subnet.ParseConfig([]byte(`{"Network":"10.244.0.0/16"}`))
	if err != nil {
		t.Fatal(err)
	}
	mgr := subnet.NewManager(subnet.ManagerConfig{Registry: hangingRegistry{subnettest.New()}, Network: cfg, Log: logger})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := d.acquire(ctx, mgr, subnettest.MustAttrs("192.0.2.1", "vxlan"), subnet.Lease{})
		errc <- err
	}()
	deadline := time.After(time.Second)
	for {
		if s := d.health.Snapshot(); strings.Contains(s.LastError, "etcd did not answer within 50ms") {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("no bounded-acquisition error within 1s; last error %q", d.health.Snapshot().LastError)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("acquire returned a lease from a store that never answers")
	}
}

// With masquerade, forward rules and the tunnel-port restriction all off, no firewall is
// made: weftd needs no iptables binary and writes no rule.
func TestNoFirewallWhenNoRuleIsWanted(t *testing.T) {
	logger, _ := ktesting.NewTestContext(t)
	t.Setenv("PATH", t.TempDir()) // no iptables binary to find
	d := New(Config{}, logger)
	for _, nft := range []bool{false, true} {
		fw, err := d.startFirewall()(nft)
		if err != nil || fw != nil {
			t.Fatalf("firewall (nftables %v) = %v, %v; want no firewall and no error", nft, fw, err)
		}
	}
	d = New(Config{IPMasq: true}, logger)
	if _, err := d.startFirewall()(false); !errors.Is(err, iptables.ErrNoIPTables) {
		t.Fatalf("with --ip-masq and no iptables binary, the iptables firewall: %v, want ErrNoIPTables", err)
	}
	// nftables mode needs no binary; with none, there is no iptables to clean either.
	fw, err := d.startFirewall()(true)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fw.(*nftables.Manager); !ok {
		t.Fatalf("EnableNFTables gave %T", fw)
	}
}
