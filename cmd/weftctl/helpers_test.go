package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcdv3"
	"github.com/weftnet/weft/test/etcdtest"
)

// testPrefix is not flannel's default, so that the tests prove the prefix is honoured.
const testPrefix = "/weftctl-test/network"

// env is a real etcd on loopback, a registry on it for the tests' own reads and writes, and
// the environment weftctl runs with (WEFTD_ETCD_* pointing at that etcd).
type env struct {
	t      *testing.T
	srv    *etcdtest.Server
	reg    *etcdv3.Registry
	getenv map[string]string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := etcdtest.Start(t, etcdtest.Options{})
	reg, err := etcdv3.New(etcdv3.Config{Endpoints: []string{srv.Endpoint()}, Prefix: testPrefix}, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return &env{t: t, srv: srv, reg: reg, getenv: map[string]string{
		"WEFTD_ETCD_ENDPOINTS": srv.Endpoint(),
		"WEFTD_ETCD_PREFIX":    testPrefix,
	}}
}

// result is one weftctl run.
type result struct {
	code           int
	stdout, stderr string
}

// run runs weftctl in-process with e's environment.
func (e *env) run(args ...string) result { return e.runStdin("", args...) }

func (e *env) runStdin(stdin string, args ...string) result {
	e.t.Helper()
	return runWith(e.t, e.getenv, stdin, args...)
}

func runWith(t *testing.T, getenv map[string]string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, append([]string{"--timeout=10s"}, args...), strings.NewReader(stdin), &out, &errOut,
		func(k string) string { return getenv[k] })
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// must fails the test unless the run exited with code.
func (r result) must(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d, got %s", code, r)
	}
	return r
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// putConfig writes a config directly (bypassing weftctl's checks).
func (e *env) putConfig(raw string) {
	e.t.Helper()
	if _, err := e.reg.Client().Put(ctxT(e.t), testPrefix+"/config", raw); err != nil {
		e.t.Fatal(err)
	}
}

// storedConfig returns the config key's value, or "" when absent.
func (e *env) storedConfig() string {
	e.t.Helper()
	raw, _, err := e.reg.GetConfig(ctxT(e.t))
	if err != nil {
		return ""
	}
	return string(raw)
}

// raw returns a lease key's value and etcd lease ID; ok is false when the key is absent.
func (e *env) raw(leaseKey string) (value string, leaseID int64, ok bool) {
	e.t.Helper()
	resp, err := e.reg.Client().Get(ctxT(e.t), testPrefix+"/subnets/"+leaseKey)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return "", 0, false
	}
	return string(resp.Kvs[0].Value), resp.Kvs[0].Lease, true
}

func (e *env) lease(sn, pub, backendType string, ttl time.Duration) subnet.Lease {
	e.t.Helper()
	l, err := e.reg.CreateLease(ctxT(e.t), pfx(sn), netip.Prefix{}, subnet.LeaseAttrs{PublicIP: addr(pub), BackendType: backendType}, ttl)
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}
