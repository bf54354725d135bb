package dist

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// unitFile is a parsed systemd unit file or drop-in: section -> key -> values in order.
type unitFile map[string]map[string][]string

// parseUnit parses the subset of the unit file syntax the shipped files use: [Section]
// headers, Key=Value lines, # and ; comments, blank lines. Continuation lines are refused.
func parseUnit(t *testing.T, name string, data []byte) unitFile {
	t.Helper()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		case strings.HasSuffix(line, `\`):
			t.Fatalf("%s:%d: continuation lines are not expected", name, n)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is not Key=Value inside a section", name, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// last returns the effective value of a key (the last assignment), or "".
func (u unitFile) last(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

func TestWeftdServiceSettings(t *testing.T) {
	u := parseUnit(t, "weftd.service", readRepoFile(t, "dist/weftd.service"))
	for _, want := range []struct{ section, key, value string }{
		{"Unit", "Wants", "network-online.target"},
		{"Unit", "After", "network-online.target"},
		{"Service", "Type", "notify"},
		{"Service", "Restart", "on-failure"},
		{"Service", "EnvironmentFile", "-/etc/weft/weftd.env"},
		{"Service", "ExecStart", "/usr/local/bin/weftd"},
		{"Service", "CapabilityBoundingSet", "CAP_NET_ADMIN CAP_NET_RAW"},
		{"Service", "AmbientCapabilities", "CAP_NET_ADMIN CAP_NET_RAW"},
		{"Service", "DeviceAllow", "/dev/net/tun rw"},
		{"Service", "RuntimeDirectory", "flannel"},
		{"Service", "RuntimeDirectoryPreserve", "yes"},
		{"Install", "WantedBy", "multi-user.target"},
	} {
		if got := u.last(want.section, want.key); got != want.value {
			t.Errorf("[%s] %s=%q, want %q", want.section, want.key, got, want.value)
		}
	}
	// Settings that would break weftd: it must see the host's network, /dev/net/tun, and
	// write /run/flannel and /run/xtables.lock.
	for _, forbidden := range []struct{ key, value string }{
		{"PrivateNetwork", "yes"}, {"PrivateDevices", "yes"}, {"ProtectSystem", "strict"},
		{"DynamicUser", "yes"}, {"RuntimeDirectoryPreserve", "no"},
	} {
		if u.last("Service", forbidden.key) == forbidden.value {
			t.Errorf("%s=%s breaks weftd", forbidden.key, forbidden.value)
		}
	}
	if user := u.last("Service", "User"); user != "" && user != "root" {
		t.Errorf("User=%s: weftd's capabilities are granted to root, bounded by CapabilityBoundingSet", user)
	}
	// The ExecStart binary is where the image and the manifest put it.
	df := parseDockerfile(t)
	if got, want := u.last("Service", "ExecStart"), df.weftdPath(t); got != want {
		t.Errorf("ExecStart=%s, but the image installs weftd at %s", got, want)
	}
}

func TestDockerDropInSettings(t *testing.T) {
	u := parseUnit(t, "docker-weft.conf", readRepoFile(t, "dist/docker-weft.conf"))
	for _, want := range []struct{ section, key, value string }{
		{"Unit", "Requires", "weftd.service"},
		{"Unit", "After", "weftd.service"},
		{"Service", "EnvironmentFile", "-/run/docker_opts.env"},
	} {
		if got := u.last(want.section, want.key); got != want.value {
			t.Errorf("[%s] %s=%q, want %q", want.section, want.key, got, want.value)
		}
	}
	// ExecStartPre runs mk-docker-opts.sh from the subnet file weftd writes into the file
	// the EnvironmentFile= names, and ExecStart passes $DOCKER_OPTS (split into words).
	pre := strings.Fields(u.last("Service", "ExecStartPre"))
	if len(pre) == 0 || pre[0] != "/usr/local/bin/mk-docker-opts.sh" {
		t.Fatalf("ExecStartPre=%q, want /usr/local/bin/mk-docker-opts.sh ...", pre)
	}
	if got, want := pre[0], parseDockerfile(t).scriptPath(t); got != want {
		t.Errorf("ExecStartPre runs %s, but the image installs mk-docker-opts.sh at %s", got, want)
	}
	argValue := func(flag, dflt string) string {
		if i := slices.Index(pre, flag); i >= 0 && i+1 < len(pre) {
			return pre[i+1]
		}
		return dflt
	}
	if got := argValue("-f", "/run/flannel/subnet.env"); got != "/run/flannel/subnet.env" {
		t.Errorf("mk-docker-opts.sh -f %s, want weftd's default --subnet-file /run/flannel/subnet.env", got)
	}
	if got, want := argValue("-d", "/run/docker_opts.env"), strings.TrimPrefix(u.last("Service", "EnvironmentFile"), "-"); got != want {
		t.Errorf("mk-docker-opts.sh writes %s but EnvironmentFile= reads %s", got, want)
	}
	key := argValue("-k", "DOCKER_OPTS")
	execs := u["Service"]["ExecStart"]
	if len(execs) != 2 || execs[0] != "" {
		t.Fatalf("ExecStart lines %q: want an empty ExecStart= (reset) and one command", execs)
	}
	if !slices.Contains(strings.Fields(execs[1]), "$"+key) {
		t.Errorf("ExecStart=%s does not pass $%s (unquoted, so systemd splits it)", execs[1], key)
	}
}

// verifyUnits runs systemd-analyze verify on units in dir (the unit search path is dir,
// then the system's) and returns its exit code and the lines that mention dir or a unit
// name we ship: a clean verify prints nothing about them.
func verifyUnits(t *testing.T, tool, dir string, units ...string) (int, []string) {
	t.Helper()
	env := []string{"PATH=" + os.Getenv("PATH"), "SYSTEMD_UNIT_PATH=" + dir + ":", "SYSTEMD_LOG_COLOR=0"}
	res := run(t, env, dir, tool, append([]string{"verify"}, units...)...)
	var complaints []string
	for _, line := range strings.Split(res.stdout+res.stderr, "\n") {
		if strings.Contains(line, dir) || strings.Contains(line, "weftd.service") || strings.Contains(line, "docker.service") {
			complaints = append(complaints, line)
		}
	}
	return res.code, complaints
}

// installForVerify writes weftd.service, a stand-in docker.service and the drop-in into a
// temporary unit directory. systemd-analyze verify checks that every Exec*= binary exists
// and is executable, and the real ones (/usr/local/bin/weftd, mk-docker-opts.sh, dockerd)
// are not installed here: the copies point them at a temporary copy of /bin/true instead.
// Everything else in the files is verified as shipped. replaceScript=false keeps
// ExecStartPre pointing at the uninstalled script (the negative control).
func installForVerify(t *testing.T, replaceScript bool) string {
	t.Helper()
	dir := t.TempDir()
	stub := filepath.Join(dir, "stub-true")
	copyExecutable(t, "/bin/true", stub)
	write := func(rel, content string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	service := string(readRepoFile(t, "dist/weftd.service"))
	write("weftd.service", strings.Replace(service, "ExecStart=/usr/local/bin/weftd", "ExecStart="+stub, 1))
	write("docker.service", "[Unit]\nDescription=stand-in for the packaged docker.service\n\n[Service]\nExecStart="+stub+"\n")
	dropIn := string(readRepoFile(t, "dist/docker-weft.conf"))
	dropIn = strings.Replace(dropIn, "ExecStart=/usr/bin/dockerd", "ExecStart="+stub, 1)
	if replaceScript {
		dropIn = strings.Replace(dropIn, "ExecStartPre=/usr/local/bin/mk-docker-opts.sh", "ExecStartPre="+stub, 1)
	}
	write("docker.service.d/10-weft.conf", dropIn)
	return dir
}

func TestSystemdAnalyzeVerify(t *testing.T) {
	tool := lookTool(t, "systemd-analyze", "systemd")
	dir := installForVerify(t, true)
	code, complaints := verifyUnits(t, tool, dir, filepath.Join(dir, "weftd.service"), filepath.Join(dir, "docker.service"))
	if code != 0 || len(complaints) > 0 {
		t.Errorf("systemd-analyze verify weftd.service docker.service (+ docker-weft.conf): exit %d\n%s", code, strings.Join(complaints, "\n"))
	}

	// Negative control: the drop-in is really loaded and checked. Left pointing at the
	// uninstalled script, its ExecStartPre must be reported.
	dir = installForVerify(t, false)
	code, complaints = verifyUnits(t, tool, dir, filepath.Join(dir, "docker.service"))
	if code == 0 || !strings.Contains(strings.Join(complaints, "\n"), "/usr/local/bin/mk-docker-opts.sh") {
		if _, err := os.Stat("/usr/local/bin/mk-docker-opts.sh"); err == nil {
			t.Skip("/usr/local/bin/mk-docker-opts.sh is installed here; the negative control cannot run")
		}
		t.Errorf("systemd-analyze verify did not notice the drop-in's ExecStartPre (exit %d, %q): the drop-in was not loaded", code, complaints)
	}
}
