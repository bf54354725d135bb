package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/backends"
	"github.com/weftnet/weft/pkg/wait"
	"github.com/weftnet/weft/subnet"
)

// waitConfig reads and validates the network config, waiting (watching the key) while it
// is missing or invalid and logging once per change. It returns a nil config only when ctx
// ends.
func (d *Daemon) waitConfig(ctx context.Context, reg subnet.Registry) (*subnet.Config, backend.Type, int64, error) {
	var lastMsg string
	report := func(msg string, err error) {
		d.health.SetError(err)
		if msg == lastMsg {
			return
		}
		lastMsg = msg
		d.log.Error(err, msg)
	}
	for ctx.Err() == nil {
		// Each read is bounded, so that an etcd that cannot be reached (down, or refusing
		// our TLS) is reported with its reason instead of waited for in silence.
		rctx, cancel := context.WithTimeout(ctx, configReadTimeout)
		raw, rev, err := reg.GetConfig(rctx)
		cancel()
		switch {
		case errors.Is(err, subnet.ErrNotFound):
			report("No network config in "+d.configPlace()+"; waiting for a valid config", err)
		case err != nil:
			if ctx.Err() != nil {
				return nil, backend.Type{}, 0, nil
			}
			report("Cannot read the network config from "+d.configWhere()+"; retrying", err)
			if wait.Sleep(ctx, d.jitterDelay()) != nil {
				return nil, backend.Type{}, 0, nil
			}
			continue
		default:
			cfg, bt, perr := backends.ParseNetworkConfig(raw)
			if perr == nil {
				return cfg, bt, rev, nil
			}
			report("Invalid network config "+string(bytes.TrimSpace(raw))+"; waiting for a valid config", perr)
		}
		// Wait for the key to change, then read again.
		wctx, cancel := context.WithCancel(ctx)
		select {
		case <-ctx.Done():
		case <-reg.WatchConfig(wctx, rev):
		}
		cancel()
	}
	return nil, backend.Type{}, 0, nil
}

// configReadTimeout bounds one read of the network config.
const configReadTimeout = 5 * time.Second

// watchConfig reports config changes made while running. weft, like flanneld, applies a
// new config on restart only; a broken config never touches the running data plane.
func (d *Daemon) watchConfig(ctx context.Context, reg subnet.Registry, running *subnet.Config, rev int64) error {
	for ctx.Err() == nil {
		for raw := range reg.WatchConfig(ctx, rev) {
			switch cfg, _, err := backends.ParseNetworkConfig(raw); {
			case raw == nil:
				d.log.Error(nil, "The network config was deleted from "+d.configWhere()+"; the running data plane is kept", "key", d.configKey())
			case err != nil:
				d.log.Error(err, "The network config in "+d.configWhere()+" is now invalid; the running data plane is kept")
			case !sameConfig(cfg, running):
				d.log.Info("The network config in "+d.configWhere()+" changed; restart weftd to apply it", "network", cfg.Network, "backend", cfg.BackendType)
			}
		}
		if wait.Sleep(ctx, d.jitterDelay()) != nil {
			return nil
		}
		if _, r, err := reg.GetConfig(ctx); err == nil {
			rev = r
		}
	}
	return nil
}

func sameConfig(a, b *subnet.Config) bool {
	return a.EnableIPv4 == b.EnableIPv4 && a.Network == b.Network && a.SubnetLen == b.SubnetLen && a.SubnetMin == b.SubnetMin &&
		a.SubnetMax == b.SubnetMax && a.EnableIPv6 == b.EnableIPv6 && a.IPv6Network == b.IPv6Network &&
		a.IPv6SubnetLen == b.IPv6SubnetLen && a.IPv6SubnetMin == b.IPv6SubnetMin && a.IPv6SubnetMax == b.IPv6SubnetMax &&
		a.BackendType == b.BackendType && bytes.Equal(compact(a.Backend), compact(b.Backend))
}

func compact(raw []byte) []byte {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}

// configKey names the config key in messages (the layout is etcdv3's), or the file.
func (d *Daemon) configKey() string {
	if d.cfg.Kube != nil {
		return d.cfg.Kube.NetConfPath
	}
	return d.cfg.Etcd.Keys().Config
}

// jitterDelay is the pause before re-reading the store after an error.
func (d *Daemon) jitterDelay() time.Duration {
	return time.Second + rand.N(time.Second)
}
