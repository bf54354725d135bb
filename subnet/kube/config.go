package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"time"

	"github.com/weftnet/weft/subnet"
)

// configCheck is how often WatchConfig looks at the net-conf file: a local file (a
// ConfigMap volume the kubelet updates), not an API request.
const configCheck = 2 * time.Second

// GetConfig reads the net-conf file. Its revision is a fingerprint of the bytes (so that
// WatchConfig can tell a change from the bytes it was given). subnet.ErrNotFound when the
// file does not exist.
func (r *Registry) GetConfig(context.Context) ([]byte, int64, error) {
	raw, err := os.ReadFile(r.netConf)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%s: %w", r.netConf, subnet.ErrNotFound)
	}
	if err != nil {
		return nil, 0, err
	}
	return raw, fingerprint(raw), nil
}

func fingerprint(raw []byte) int64 {
	h := fnv.New64a()
	h.Write(raw)
	return int64(h.Sum64() >> 1) // positive
}

// WatchConfig delivers the file's bytes (nil when it is removed) each time they differ from
// the revision rev names, until ctx ends.
func (r *Registry) WatchConfig(ctx context.Context, rev int64) <-chan []byte {
	out := make(chan []byte, 1)
	go func() {
		defer close(out)
		t := time.NewTicker(configCheck)
		defer t.Stop()
		var last []byte
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			raw, r2, err := r.GetConfig(ctx)
			switch {
			case errors.Is(err, subnet.ErrNotFound):
				raw, r2 = nil, -1
			case err != nil:
				continue
			}
			if r2 == rev || (last != nil && bytes.Equal(raw, last)) {
				continue
			}
			rev, last = r2, raw
			select {
			case out <- raw:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// PutConfig is unsupported: the config is the ConfigMap's net-conf.json.
func (r *Registry) PutConfig(context.Context, []byte, int64) (int64, error) {
	return 0, fmt.Errorf("write the network config: %w (edit net-conf.json in the ConfigMap)", ErrUnsupported)
}
