package cluster

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// ErrClosed is returned by operations on a closed cluster.
var ErrClosed = errors.New("cluster is closed")

// Exec runs argv inside namespace ns (ip netns exec), bounded by ExecTimeout, and returns its
// combined output. The error carries the output too.
func (c *Cluster) Exec(ns string, argv ...string) (string, error) {
	return c.ExecContext(context.Background(), ns, argv...)
}

// ExecContext is Exec bounded by ctx as well as ExecTimeout.
func (c *Cluster) ExecContext(ctx context.Context, ns string, argv ...string) (string, error) {
	return execIn(ctx, ns, argv...)
}

// execIn runs argv inside ns with ip netns exec, bounded by ctx and ExecTimeout.
func execIn(ctx context.Context, ns string, argv ...string) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("exec: no command")
	}
	ctx, cancel := context.WithTimeout(ctx, ExecTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %w: %s", ns, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
