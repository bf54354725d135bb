package etcdtest

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t, Options{})
	get := func() error {
		resp, err := http.Get(s.Endpoint() + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(); err != nil {
		t.Fatalf("etcd not serving: %v", err)
	}
	s.Stop()
	if err := get(); err == nil {
		t.Fatal("etcd still serving after Stop")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := get(); err != nil {
		t.Fatalf("etcd not serving after restart: %v", err)
	}
}

// TestRestartWaitsForThisRun: the log is appended across runs, so readiness must be read
// from the new run's output, not from the previous run's "ready" line.
func TestRestartWaitsForThisRun(t *testing.T) {
	s := Start(t, Options{Scheme: "http", Netns: ""})
	s.Stop()
	s.mu.Lock()
	if err := s.launchLocked(); err != nil {
		s.mu.Unlock()
		t.Fatal(err)
	}
	// Straight after launch, this run has printed nothing yet.
	b, _ := os.ReadFile(s.logPath)
	fresh := string(b[s.logOffset:])
	s.mu.Unlock()
	if strings.Contains(fresh, "ready to serve client requests") {
		t.Fatalf("new run's output already says ready: %q", fresh)
	}
	s.mu.Lock()
	err := s.awaitLocked(startTimeout)
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
}

func TestClusterLeaderLossAndQuorumLoss(t *testing.T) {
	c := StartCluster(t, ClusterOptions{Members: 3})
	if len(c.Endpoints()) != 3 {
		t.Fatalf("endpoints %v", c.Endpoints())
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	put := func(v string, timeout time.Duration) error {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := cli.Put(pctx, "/k", v)
		return err
	}
	if err := put("1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	leader, err := c.LeaderIndex(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	c.Member(leader).Stop()
	var next int
	for deadline := time.Now().Add(15 * time.Second); ; {
		if next, err = c.LeaderIndex(ctx, cli); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader after the old one stopped: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if next == leader {
		t.Fatalf("leader still %d after it stopped", leader)
	}
	if err := put("2", 5*time.Second); err != nil {
		t.Fatalf("put with 2 of 3 members: %v", err)
	}
	c.Member(next).Stop()
	if err := put("3", 2*time.Second); err == nil {
		t.Fatal("put succeeded with 1 of 3 members")
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := put("4", 10*time.Second); err != nil {
		t.Fatalf("put after the members came back: %v", err)
	}
}

func TestPKIServesMutualTLS(t *testing.T) {
	p, err := NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := Start(t, Options{Scheme: "https", ExtraArgs: p.ServerArgs(true)})
	certFile, keyFile, err := p.ClientCert("root")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name    string
		cert    string
		wantErr bool
	}{{"with a client certificate", certFile, false}, {"without", "", true}} {
		tlsCfg, err := p.ClientTLS(tc.cert, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, DialTimeout: 2 * time.Second, TLS: tlsCfg, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = cli.Get(gctx, "/k")
		gcancel()
		cli.Close()
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: get error %v, want error %v", tc.name, err, tc.wantErr)
		}
	}
}

// TestPortTakenFailsFast: a server whose client port another etcd holds must not pass for
// started through that etcd's /health: its own process exits (address in use), and Start
// says so with its log instead of waiting out startTimeout.
func TestPortTakenFailsFast(t *testing.T) {
	a := Start(t, Options{})
	b, err := New(Options{Dir: t.TempDir(), ClientPort: a.opts.ClientPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Stop()
		b.release()
	})
	start := time.Now()
	err = b.Start()
	t.Logf("Start on a taken port returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if err == nil {
		t.Fatal("Start succeeded on the port of another etcd")
	}
	if !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("the error does not say that etcd exited, with its log naming the taken address: %v", err)
	}
}

// TestReservePortUnique: ports reserved and still held are never handed out again, and lie
// below the ephemeral range.
func TestReservePortUnique(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p, lock, err := reservePort()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lock.Close() })
		if seen[p] || p < portLow || p >= portHigh {
			t.Fatalf("port %d: handed out twice or outside %d-%d (seen %v)", p, portLow, portHigh-1, seen)
		}
		seen[p] = true
	}
}
