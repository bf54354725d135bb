package dist

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// weftdFlags returns the flag names weftd's --help lists.
func weftdFlags(t *testing.T, bin string) map[string]bool {
	t.Helper()
	res := run(t, nil, "", bin, "--help")
	if res.code != 0 {
		t.Fatalf("weftd --help: exit %d: %s", res.code, res.stderr)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(res.stdout+res.stderr, -1) {
		flags[m[1]] = true
	}
	for _, must := range []string{"etcd-endpoints", "subnet-file", "healthz-port", "v"} {
		if !flags[must] {
			t.Fatalf("weftd --help lists no --%s; cannot read its flags from:\n%s", must, res.stderr)
		}
	}
	return flags
}

// envFlag maps WEFTD_ETCD_ENDPOINTS to etcd-endpoints, if it names a flag of weftd.
func envFlag(flags map[string]bool, name string) (string, bool) {
	suffix, ok := strings.CutPrefix(name, "WEFTD_")
	if !ok {
		return "", false
	}
	flag := strings.ToLower(strings.ReplaceAll(suffix, "_", "-"))
	return flag, flags[flag]
}

// fileFlags are the flags whose value weftd opens at start.
var fileFlags = map[string]bool{"etcd-cafile": true, "etcd-certfile": true, "etcd-keyfile": true}

// weftdAccepts runs `weftd --version` with env, after pointing each file flag at an
// existing empty file: weftd parses and validates every flag before it acts on
// --version, so exit 0 means every value is accepted.
func weftdAccepts(t *testing.T, bin string, flags map[string]bool, env map[string]string) {
	t.Helper()
	dir := t.TempDir()
	list := []string{"PATH=" + os.Getenv("PATH")}
	for name, value := range env {
		if flag, _ := envFlag(flags, name); fileFlags[flag] && value != "" {
			value = filepath.Join(dir, filepath.Base(value))
			if err := os.WriteFile(value, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		list = append(list, name+"="+value)
	}
	res := run(t, list, "", bin, "--version")
	if res.code != 0 {
		t.Errorf("weftd rejects the settings %q: exit %d: %s", list, res.code, res.stderr)
	}
}

// TestWeftdEnvFile: every WEFTD_ variable in weftd.env, commented out or not, names a flag
// of weftd, and weftd accepts all the example values together.
func TestWeftdEnvFile(t *testing.T) {
	bin := buildWeftd(t, "dist-test")
	flags := weftdFlags(t, bin)
	data := string(readRepoFile(t, "dist/weftd.env"))
	env := map[string]string{}
	for i, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		active := !strings.HasPrefix(line, "#")
		m := regexp.MustCompile(`^#?\s*(WEFTD_[A-Z0-9_]+)=(.*)$`).FindStringSubmatch(line)
		if m == nil {
			if active && line != "" {
				t.Errorf("weftd.env:%d: %q is neither a comment nor WEFTD_<FLAG>=value", i+1, line)
			}
			continue
		}
		if _, ok := envFlag(flags, m[1]); !ok {
			t.Errorf("weftd.env:%d: %s names no weftd flag", i+1, m[1])
		}
		if strings.ContainsAny(m[2], `"'$\`) {
			t.Errorf("weftd.env:%d: keep values plain (no quotes or $): %s", i+1, line)
		}
		if m[2] != "" {
			env[m[1]] = m[2]
		}
	}
	for _, must := range []string{"WEFTD_ETCD_ENDPOINTS", "WEFTD_IFACE", "WEFTD_SUBNET_FILE", "WEFTD_IP_MASQ", "WEFTD_HEALTHZ_PORT"} {
		if _, ok := env[must]; !ok {
			t.Errorf("weftd.env does not show %s", must)
		}
	}
	weftdAccepts(t, bin, flags, env)
}
