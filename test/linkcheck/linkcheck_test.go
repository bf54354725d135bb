package linkcheck

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/weftnet/weft"

// deps lists the packages a main package links, with go list -deps.
func deps(t *testing.T, pkg string) map[string]bool {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(goBin, "list", "-deps", pkg)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr.String())
	}
	m := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		m[p] = true
	}
	return m
}

func TestBinariesLinkNoTestCodeAndWeftctlNoDaemon(t *testing.T) {
	for _, tc := range []struct {
		main      string
		forbidden []string // exact package paths, or prefixes ending in "/"
	}{
		{module + "/cmd/weftctl", []string{"testing", module + "/daemon", module + "/daemon/", module + "/test/", module + "/subnet/subnettest"}},
		{module + "/cmd/weftd", []string{"testing", module + "/test/", module + "/subnet/subnettest"}},
		{module + "/cmd/weft-cni", []string{"testing", module + "/test/", module + "/daemon", module + "/subnet"}},
	} {
		d := deps(t, tc.main)
		if !d[tc.main] {
			t.Fatalf("go list -deps %s does not list the package itself: %v", tc.main, d)
		}
		for p := range d {
			for _, f := range tc.forbidden {
				if p == f || (strings.HasSuffix(f, "/") && strings.HasPrefix(p, f)) {
					t.Errorf("%s links %s", tc.main, p)
				}
			}
		}
	}
}
