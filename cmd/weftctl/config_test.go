package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/backends"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcdv3"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "net.json")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigSetRejectsInvalid: every config weftd would reject is refused with weftd's own
// message (backends.ParseNetworkConfig's) and nothing is written.
func TestConfigSetRejectsInvalid(t *testing.T) {
	e := newEnv(t)
	for _, js := range []string{
		// representative cases of subnet/config_test.go
		`not json`,
		`{"Network":"10.244.0.0/16"} {}`,
		`{}`,
		`{"Network":"fd00::/64"}`,
		`{"Network":"10.244.0.0/29"}`,
		`{"Network":"10.244.0.0/16","SubnetLen":31}`,
		`{"Network":"10.244.0.0/16","SubnetMin":"10.245.0.0"}`,
		`{"Network":"10.244.0.0/16","SubnetMax":"10.244.3.7"}`,
		`{"Network":"10.244.0.0/16","SubnetMin":"10.244.9.0","SubnetMax":"10.244.3.0"}`,
		`{"Network":"10.244.0.0/16","Backend":"vxlan"}`,
		`{"Network":"10.244.0.0/16","SubnetLen":17}`,
		`{"EnableIPv4":false,"EnableIPv6":true}`,
		`{"EnableIPv6":true,"Network":"10.244.0.0/16","IPv6Network":"10.245.0.0/16"}`,
		// the daemon's own checks: backend type and the backend's values
		`{"Network":"10.244.0.0/16","Backend":{"Type":"carrier-pigeon"}}`,
		`{"Network":"10.244.0.0/16","Backend":{}}`,
		`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":0}}`,
	} {
		_, _, perr := backends.ParseNetworkConfig([]byte(js))
		if perr == nil || !errors.Is(perr, subnet.ErrInvalidConfig) {
			t.Fatalf("test case %s: weftd accepts it (%v)", js, perr)
		}
		want := "weftctl: " + perr.Error() + "\n"
		for _, how := range []string{"file", "stdin"} {
			var r result
			if how == "file" {
				r = e.run("config", "set", writeFile(t, js))
			} else {
				r = e.runStdin(js, "config", "set", "-")
			}
			if r.code != 1 || r.stderr != want || r.stdout != "" {
				t.Errorf("%s from %s: want exit 1 and stderr %q, got %s", js, how, want, r)
			}
		}
	}
	if got := e.storedConfig(); got != "" {
		t.Errorf("an invalid config was written: %s", got)
	}
}

// TestConfigSetWarns: a config flanneld would run is written, and what weftd reads
// differently from what was probably meant is said on stderr (and in the JSON output).
func TestConfigSetWarns(t *testing.T) {
	e := newEnv(t)
	js := `{"Network":"10.244.0.1/16","SubnetLength":24,"Backend":{"Type":"host-gw","Port":1}}`
	r := e.run("config", "set", writeFile(t, js)).must(t, 0)
	for _, w := range []string{`did you mean 10.244.0.0/16`, `unknown key "SubnetLength" ignored`, `unknown Backend key "Port" ignored`} {
		if !strings.Contains(r.stderr, "warning: ") || !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
	if got := e.storedConfig(); got != js {
		t.Errorf("stored %q, want the config as given", got)
	}
	r = e.run("config", "set", "-o", "json", writeFile(t, js)).must(t, 0)
	if !strings.Contains(r.stdout, `"warnings": [`) {
		t.Errorf("JSON output has no warnings: %s", r.stdout)
	}
}

func TestConfigSetAndGet(t *testing.T) {
	e := newEnv(t)
	r := e.run("config", "get").must(t, 1)
	if !strings.Contains(r.stderr, "no network config at "+testPrefix+"/config") {
		t.Errorf("missing config: %s", r)
	}

	valid := `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`
	r = e.run("config", "set", writeFile(t, "\n"+valid+"\n\n")).must(t, 0)
	if !strings.Contains(r.stdout, "Network 10.244.0.0/16, SubnetLen /24, subnets 10.244.1.0 to 10.244.255.0, backend host-gw") {
		t.Errorf("summary: %s", r)
	}
	if got := e.storedConfig(); got != valid {
		t.Errorf("stored %q, want %q (trimmed)", got, valid)
	}
	r = e.run("config", "get").must(t, 0)
	if r.stdout != valid+"\n" || r.stderr != "" {
		t.Errorf("config get: %s", r)
	}

	// From stdin, with JSON output.
	next := `{"Network":"10.244.0.0/16","SubnetMin":"10.244.10.0","Backend":{"Type":"host-gw"}}`
	r = e.runStdin(next, "config", "set", "-", "-o", "json").must(t, 0)
	var res configSetResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Key != testPrefix+"/config" || res.Revision == 0 || res.Forced {
		t.Errorf("JSON result %+v (%v): %s", res, err, r)
	}
	if got := e.storedConfig(); got != next {
		t.Errorf("stored %q, want %q", got, next)
	}

	// A stored config weftd rejects is still printed, with a warning.
	e.putConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"carrier-pigeon"}}`)
	r = e.run("config", "get").must(t, 0)
	if !strings.Contains(r.stdout, "carrier-pigeon") || !strings.Contains(r.stderr, `warning: weftd rejects this config: invalid network config: Backend.Type "carrier-pigeon" is not a known backend`) {
		t.Errorf("config get of an invalid config: %s", r)
	}

	r = e.run("config", "set", filepath.Join(t.TempDir(), "absent.json")).must(t, 1)
	if !strings.Contains(r.stderr, "absent.json: no such file") {
		t.Errorf("missing file: %s", r)
	}
}

// TestConfigSetOrphans: a config that existing leases would not fit is refused, listing
// them, unless --force.
func TestConfigSetOrphans(t *testing.T) {
	e := newEnv(t)
	e.putConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	e.lease("10.244.3.0/24", "192.0.2.3", "host-gw", time.Hour)
	e.lease("10.244.9.0/24", "192.0.2.9", "", 0) // a reservation
	e.lease("10.244.40.0/24", "192.0.2.40", "host-gw", time.Hour)

	// Still fits: a larger range around them.
	fits := `{"Network":"10.244.0.0/16","SubnetMin":"10.244.100.0","Backend":{"Type":"host-gw"}}`
	e.run("config", "set", writeFile(t, fits)).must(t, 0)

	for _, tc := range []struct {
		config  string
		orphans []string
		kept    []string
	}{
		// outside Network
		{`{"Network":"10.244.0.0/20","Backend":{"Type":"host-gw"}}`, []string{"10.244.40.0/24  192.0.2.40  (lease)"}, []string{"10.244.3.0/24", "10.244.9.0/24"}},
		// wrong length
		{`{"Network":"10.244.0.0/16","SubnetLen":25,"Backend":{"Type":"host-gw"}}`,
			[]string{"10.244.3.0/24  192.0.2.3  (lease)", "10.244.9.0/24  192.0.2.9  (reservation)", "10.244.40.0/24  192.0.2.40  (lease)"}, nil},
	} {
		r := e.run("config", "set", writeFile(t, tc.config)).must(t, 1)
		if !strings.Contains(r.stderr, "refusing to write the config") || !strings.Contains(r.stderr, "use --force") {
			t.Errorf("%s: %s", tc.config, r)
		}
		for _, o := range tc.orphans {
			if !strings.Contains(r.stderr, o) {
				t.Errorf("%s: orphan %q not listed: %s", tc.config, o, r)
			}
		}
		for _, k := range tc.kept {
			if strings.Contains(r.stderr, k) {
				t.Errorf("%s: %s listed but it still fits: %s", tc.config, k, r)
			}
		}
		if got := e.storedConfig(); got != fits {
			t.Fatalf("refused config was written: %s", got)
		}
	}

	narrow := `{"Network":"10.244.0.0/20","Backend":{"Type":"host-gw"}}`
	r := e.run("config", "set", "--force", writeFile(t, narrow)).must(t, 0)
	if !strings.Contains(r.stderr, "1 lease(s) no longer fit") || !strings.Contains(r.stderr, "10.244.40.0/24") {
		t.Errorf("--force warning: %s", r)
	}
	if got := e.storedConfig(); got != narrow {
		t.Errorf("--force did not write: %s", got)
	}
	r = e.run("config", "set", "--force", "-o", "json", writeFile(t, narrow)).must(t, 0)
	var res configSetResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || !res.Forced || len(res.Orphans) != 1 || res.Orphans[0].Subnet != pfx("10.244.40.0/24") {
		t.Errorf("--force JSON %+v (%v): %s", res, err, r)
	}
}

// TestConfigSetSeesLeaseCreatedMeanwhile: a lease created between the orphan check and the
// write makes the transaction fail, and the new listing refuses the config.
func TestConfigSetSeesLeaseCreatedMeanwhile(t *testing.T) {
	e := newEnv(t)
	e.putConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	e.lease("10.244.3.0/24", "192.0.2.3", "host-gw", time.Hour)

	var once sync.Once
	var out, errOut strings.Builder
	o := &options{output: outputTable, timeout: 10 * time.Second,
		etcdConfig: etcdv3.Config{Endpoints: []string{e.srv.Endpoint()}, Prefix: testPrefix, DialTimeout: 10 * time.Second}}
	c := &cli{opts: o, stdout: &out, stderr: &errOut, afterList: func() {
		once.Do(func() { e.lease("10.244.200.0/24", "192.0.2.200", "host-gw", time.Hour) })
	}}
	defer c.close()
	reg, err := c.registry()
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte(`{"Network":"10.244.0.0/17","Backend":{"Type":"host-gw"}}`)
	cfg, _, err := backends.ParseNetworkConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.putConfig(ctxT(t), reg, cfg, raw)
	if err == nil || !strings.Contains(err.Error(), "10.244.200.0/24  192.0.2.200") {
		t.Fatalf("want a refusal naming the lease created meanwhile, got %v", err)
	}
	if got := e.storedConfig(); strings.Contains(got, "/17") {
		t.Errorf("config written despite the new lease: %s", got)
	}
}
