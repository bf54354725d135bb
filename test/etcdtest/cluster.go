package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/test/nstest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ClusterOptions describe a multi-member etcd cluster. Every member listens on Host with its
// own ports (etcd members may share an address).
type ClusterOptions struct {
	// Members is the member count (default 3).
	Members int
	// Netns, if set, runs every member inside that named network namespace.
	Netns string
	// Host is the address all members listen on; 127.0.0.1 by default.
	Host string
	// ClientPorts and PeerPorts give each member's ports (len Members each). Empty: free
	// loopback ports (only valid without Netns).
	ClientPorts, PeerPorts []int
	// Dir holds one directory per member; a temp dir by default.
	Dir string
	// Scheme is "http" (default) or "https" for the client URLs.
	Scheme string
	// ExtraArgs are appended to every member's command line (e.g. TLS flags).
	ExtraArgs []string
	// Token is the --initial-cluster-token; a fixed default when empty.
	Token string
}

// Cluster is a set of etcd members forming one cluster. Members can be stopped (SIGKILL)
// and started again on their data one by one.
type Cluster struct {
	members []*Server
}

// StartCluster starts a cluster for t and stops every member when t ends. The test is skipped
// with the reason if no etcd binary is installed.
func StartCluster(t nstest.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	c, err := NewCluster(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		for _, s := range c.members {
			s.release()
		}
	})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

// NewCluster prepares the members without starting them; callers own Stop.
func NewCluster(opts ClusterOptions) (*Cluster, error) {
	if opts.Members == 0 {
		opts.Members = 3
	}
	if opts.Members < 1 {
		return nil, fmt.Errorf("etcd cluster: %d members", opts.Members)
	}
	for name, ports := range map[string][]int{"ClientPorts": opts.ClientPorts, "PeerPorts": opts.PeerPorts} {
		if len(ports) != 0 && len(ports) != opts.Members {
			return nil, fmt.Errorf("etcd cluster: %d %s for %d members", len(ports), name, opts.Members)
		}
	}
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "weft-etcd-cluster-")
		if err != nil {
			return nil, err
		}
		opts.Dir = d
	}
	token := opts.Token
	if token == "" {
		token = "weft-etcdtest"
	}
	c := &Cluster{}
	for i := 0; i < opts.Members; i++ {
		o := Options{
			Netns: opts.Netns, Host: opts.Host, Scheme: opts.Scheme,
			Name: fmt.Sprintf("m%d", i), Dir: filepath.Join(opts.Dir, fmt.Sprintf("m%d", i)),
		}
		if opts.Members == 1 {
			o.Name = "default" // as a lone Server is named
		}
		if len(opts.ClientPorts) > 0 {
			o.ClientPort, o.PeerPort = opts.ClientPorts[i], opts.PeerPorts[i]
		}
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return nil, err
		}
		s, err := New(o)
		if err != nil {
			for _, m := range c.members {
				m.release()
			}
			return nil, err
		}
		c.members = append(c.members, s)
	}
	var initial []string
	for _, s := range c.members {
		initial = append(initial, s.Name()+"="+s.PeerURL())
	}
	for _, s := range c.members {
		s.opts.InitialCluster = strings.Join(initial, ",")
		s.opts.ExtraArgs = append(append([]string{"--initial-cluster-token", token}, opts.ExtraArgs...), s.opts.ExtraArgs...)
	}
	return c, nil
}

// Start launches every member that is not running, all at once (a member serves only
// once a quorum is up), and waits until each serves.
func (c *Cluster) Start() error {
	var started []*Server
	for _, s := range c.members {
		s.mu.Lock()
		if s.cmd == nil {
			if err := s.launchLocked(); err != nil {
				s.mu.Unlock()
				c.Stop()
				return err
			}
			started = append(started, s)
		}
		s.mu.Unlock()
	}
	errs := make([]error, len(started))
	var wg sync.WaitGroup
	for i, s := range started {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.mu.Lock()
			defer s.mu.Unlock()
			errs[i] = s.awaitLocked(startTimeout)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Stop()
		return err
	}
	return nil
}

// Stop kills every member (SIGKILL) and waits for them.
func (c *Cluster) Stop() {
	for _, s := range c.members {
		s.Stop()
	}
}

// Members returns the members, in order (m0, m1, ...).
func (c *Cluster) Members() []*Server { return append([]*Server(nil), c.members...) }

// Member returns member i.
func (c *Cluster) Member(i int) *Server { return c.members[i] }

// Endpoints returns every member's client URL, in member order.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, s := range c.members {
		eps[i] = s.Endpoint()
	}
	return eps
}

// LeaderIndex asks every running member for its status (cli must reach every endpoint;
// see clientv3.Client.Status) and returns the index of the member that is leader, when the
// running members agree on one that is running. ctx bounds the queries. It returns -1 and
// an error otherwise (no quorum, an election in progress).
func (c *Cluster) LeaderIndex(ctx context.Context, cli *clientv3.Client) (int, error) {
	ids := map[uint64]int{}
	leaders := map[uint64]bool{}
	var errs []error
	for i, s := range c.members {
		if !s.Running() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(sctx, s.Endpoint())
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("status of %s: %w", s.Name(), err))
			continue
		}
		ids[st.Header.MemberId] = i
		leaders[st.Leader] = true
	}
	if len(errs) > 0 {
		return -1, errors.Join(errs...)
	}
	if len(leaders) != 1 {
		return -1, fmt.Errorf("the running members do not agree on a leader (%d opinions)", len(leaders))
	}
	for id := range leaders {
		if i, ok := ids[id]; ok && id != 0 {
			return i, nil
		}
	}
	return -1, errors.New("no running member is the leader")
}
