package subnet_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/subnettest"
)

// TestHoldKeepsLeasePinnedMeanwhile: an operator turning the held lease into a reservation
// of this node (weftctl reserve) is not a loss: the next renewal finds the reservation and
// Hold keeps it with nothing more to renew. A reservation for another node is a loss.
func TestHoldKeepsLeasePinnedMeanwhile(t *testing.T) {
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16"}`)
	for _, tc := range []struct {
		name     string
		pinTo    string
		wantLost bool
	}{
		{"pinned to me", "192.0.2.1", false},
		{"reserved for another node", "192.0.2.2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := subnettest.New()
			m := subnet.NewManager(subnet.ManagerConfig{
				Registry: reg, Network: cfg, Log: ktesting.NewLogger(t, ktesting.NewConfig()),
				TTL: 200 * time.Millisecond, RenewMargin: 150 * time.Millisecond,
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			l, err := m.Acquire(ctx, subnettest.MustAttrs("192.0.2.1", "vxlan"), subnet.Lease{Subnet: pfx("10.244.5.0/24")})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := reg.UpdateLease(ctx, l, subnettest.MustAttrs(tc.pinTo, "vxlan"), 0); err != nil {
				t.Fatal(err)
			}
			hctx, stop := context.WithTimeout(ctx, time.Second) // several renewal periods
			defer stop()
			err = m.Hold(hctx, l, nil)
			if tc.wantLost {
				if !errors.Is(err, subnet.ErrLeaseLost) {
					t.Fatalf("Hold = %v, want ErrLeaseLost: the subnet is reserved for another node", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Hold: %v", err)
			}
			if own := m.Own(); own.Subnet != l.Subnet || !own.Reserved() {
				t.Fatalf("own lease %+v, want the reservation of %s", own, l.Subnet)
			}
		})
	}
}
