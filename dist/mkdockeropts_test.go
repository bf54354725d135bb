package dist

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/subnetenv"
)

const scriptPath = "mk-docker-opts.sh"

// scriptRunners returns the ways to run mk-docker-opts.sh: through its #! line (/bin/sh),
// and with each other POSIX shell installed, so the script leans on no one shell's
// extensions.
func scriptRunners(t *testing.T) map[string][]string {
	t.Helper()
	script, err := filepath.Abs(scriptPath)
	if err != nil {
		t.Fatal(err)
	}
	runners := map[string][]string{"shebang": {script}}
	for name, argv := range map[string][]string{
		"dash":       {"dash", script},
		"bash-posix": {"bash", "--posix", script},
		"busybox":    {"busybox", "sh", script},
	} {
		if _, err := exec.LookPath(argv[0]); err == nil {
			runners[name] = argv
		}
	}
	return runners
}

// runScript runs mk-docker-opts.sh with runner, args and extra environment, in dir.
func runScript(t *testing.T, runner []string, dir string, env []string, args ...string) result {
	t.Helper()
	argv := append(slices.Clone(runner), args...)
	return run(t, append([]string{"PATH=" + os.Getenv("PATH")}, env...), dir, argv[0], argv[1:]...)
}

// dirEntries lists the names in dir.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// goldenPath is the absolute path of testdata/mk-docker-opts/name.
func goldenPath(t *testing.T, name string) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("testdata", "mk-docker-opts", name))
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func readGolden(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(goldenPath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// weftSubnetFile is a subnet file exactly as weftd writes it, with IPv6 lines the script
// must ignore.
func weftSubnetFile() string {
	return string(subnetenv.Env{
		Network:     netip.MustParsePrefix("10.244.0.0/16"),
		Subnet:      netip.MustParsePrefix("10.244.51.1/24"),
		MTU:         1450,
		IPMasq:      true,
		IPv6Network: netip.MustParsePrefix("fd00:10:244::/56"),
		IPv6Subnet:  netip.MustParsePrefix("fd00:10:244:33::1/64"),
	}.Marshal())
}

func TestMkDockerOptsOutput(t *testing.T) {
	standard := readGolden(t, "subnet.env")
	tests := []struct {
		name   string
		input  string   // subnet file content; MARKER is replaced by a path that must not appear
		args   []string // besides -f and -d
		env    []string
		golden string
	}{
		{name: "default is -i and -c", input: standard, golden: "both.env"},
		{name: "-i -c", input: standard, args: []string{"-i", "-c"}, golden: "both.env"},
		{name: "-i", input: standard, args: []string{"-i"}, golden: "individual.env"},
		{name: "-c", input: standard, args: []string{"-c"}, golden: "combined.env"},
		{name: "-k", input: standard, args: []string{"-k", "DOCKER_NETWORK_OPTIONS"}, golden: "key.env"},
		{
			name: "-k prepends the variable's value from the environment", input: standard,
			args: []string{"-c", "-k", "DOCKER_NETWORK_OPTIONS"}, env: []string{"DOCKER_NETWORK_OPTIONS=--log-level=warn"},
			golden: "key-prepend.env",
		},
		{
			name: "DOCKER_OPTS from the environment is ignored with -k", input: standard,
			args: []string{"-k", "DOCKER_NETWORK_OPTIONS"}, env: []string{"DOCKER_OPTS=--log-level=warn"}, golden: "key.env",
		},
		{name: "-m", input: standard, args: []string{"-m"}, golden: "no-ipmasq.env"},
		{name: "-m -c", input: standard, args: []string{"-m", "-c"}, golden: "no-ipmasq-combined.env"},
		{name: "FLANNEL_IPMASQ=false", input: readGolden(t, "subnet-ipmasq-false.env"), golden: "ipmasq-false.env"},
		{name: "weftd's subnet file with IPv6 keys", input: weftSubnetFile(), golden: "both.env"},
		// flanneld's script outputs every DOCKER_OPT_* variable too, sorted by name, and
		// folds it into the combined options; its own three replace the environment's.
		{
			name: "DOCKER_OPT_* from the environment", input: standard,
			env: []string{
				"DOCKER_OPT_DNS=--dns=10.96.0.10", "DOCKER_OPT_STORAGE=--storage-driver overlay2", "DOCKER_OPT_EMPTY=",
				"DOCKER_OPT_BIP=--bip=10.9.9.1/24", "MY_DOCKER_OPT_X=--ignored", "DOCKER_OPTIONS=--ignored",
			},
			golden: "env-opts.env",
		},
		{name: "DOCKER_OPT_* with -i", input: standard, args: []string{"-i"}, env: []string{"DOCKER_OPT_DNS=--dns=10.96.0.10"}, golden: "env-opts-individual.env"},
		{
			name: "DOCKER_OPT_IPMASQ from the environment with -m, -c, -k", input: standard,
			args:   []string{"-m", "-c", "-k", "DOCKER_NETWORK_OPTIONS"},
			env:    []string{"DOCKER_OPT_IPMASQ=--ip-masq=true", "DOCKER_NETWORK_OPTIONS=--log-level=warn"},
			golden: "env-opts-no-ipmasq-key.env",
		},
		{name: "DOCKER_OPT_IPMASQ from the environment is replaced", input: standard, env: []string{"DOCKER_OPT_IPMASQ=--ip-masq=true"}, golden: "both.env"},
		{
			name: "comments, blanks, CRLF, other keys, no final newline, repeated key",
			input: "# written by hand\r\n\r\n  FLANNEL_NETWORK=10.244.0.0/16 \t\r\n" +
				"OTHER_TOOL=$(touch MARKER)\r\n\tFLANNEL_SUBNET=10.244.51.1/24  \r\n" +
				"FLANNEL_MTU=1500\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true",
			golden: "both.env",
		},
	}
	for runnerName, runner := range scriptRunners(t) {
		for _, tc := range tests {
			t.Run(runnerName+"/"+tc.name, func(t *testing.T) {
				checkOutput(t, runner, tc.input, tc.args, tc.env, tc.golden, "")
			})
		}
	}
}

// TestMkDockerOptsRelativeOutput: -d with a bare file name writes into the working directory.
func TestMkDockerOptsRelativeOutput(t *testing.T) {
	for runnerName, runner := range scriptRunners(t) {
		t.Run(runnerName, func(t *testing.T) {
			dir := t.TempDir()
			res := runScript(t, runner, dir, nil, "-f", goldenPath(t, "subnet.env"), "-d", "opts.env")
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			got, err := os.ReadFile(filepath.Join(dir, "opts.env"))
			if err != nil {
				t.Fatal(err)
			}
			if want := readGolden(t, "both.env"); string(got) != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestMkDockerOptsReplacesAtomically: the output is a new file renamed over the old one,
// never the old file rewritten in place, so docker never reads half a file. A hard link to
// the old file keeps the old content.
func TestMkDockerOptsReplacesAtomically(t *testing.T) {
	for runnerName, runner := range scriptRunners(t) {
		t.Run(runnerName, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "docker_opts.env")
			old := "DOCKER_OPTS=\" --bip=10.9.9.1/24\"\n"
			if err := os.WriteFile(out, []byte(old), 0o600); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(t.TempDir(), "old-inode")
			if err := os.Link(out, link); err != nil {
				t.Fatal(err)
			}
			res := runScript(t, runner, dir, nil, "-f", goldenPath(t, "subnet.env"), "-d", out)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			if got, _ := os.ReadFile(link); string(got) != old {
				t.Errorf("the old file was rewritten in place: it now holds %q", got)
			}
			if got, _ := os.ReadFile(out); string(got) != readGolden(t, "both.env") {
				t.Errorf("new output %q", got)
			}
			if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("output mode: %v, %v; want 0644", fi.Mode(), err)
			}
			if names := dirEntries(t, dir); !slices.Equal(names, []string{"docker_opts.env"}) {
				t.Errorf("directory holds %q; want only docker_opts.env", names)
			}
		})
	}
}

func TestMkDockerOptsRejects(t *testing.T) {
	const (
		network = "FLANNEL_NETWORK=10.244.0.0/16\n"
		subnet  = "FLANNEL_SUBNET=10.244.51.1/24\n"
		mtu     = "FLANNEL_MTU=1450\n"
		masq    = "FLANNEL_IPMASQ=true\n"
	)
	const noFile = "\x00no file"
	tests := []struct {
		name     string
		input    string // the subnet file; MARKER becomes a path that must never be created
		args     []string
		env      []string
		wantCode int
		wantErr  string // in stderr
	}{
		{name: "missing subnet file", input: noFile, wantCode: 1, wantErr: "does not exist"},
		{name: "shell code in FLANNEL_SUBNET", input: network + "FLANNEL_SUBNET=$(touch MARKER)\n" + mtu + masq,
			wantCode: 1, wantErr: "malformed FLANNEL_SUBNET '$(touch "},
		{name: "backquotes in FLANNEL_MTU", input: network + subnet + "FLANNEL_MTU=`touch MARKER`\n" + masq,
			wantCode: 1, wantErr: "malformed FLANNEL_MTU"},
		{name: "a command after a value", input: "FLANNEL_NETWORK=10.244.0.0/16; touch MARKER\n" + subnet + mtu + masq,
			wantCode: 1, wantErr: "malformed FLANNEL_NETWORK"},
		{name: "a bare command line", input: network + subnet + "touch MARKER\n" + mtu + masq,
			wantCode: 1, wantErr: ":3: line is not KEY=value: 'touch "},
		{name: "code in another key, then a bad value", input: "X=$(touch MARKER)\n" + network + subnet + mtu + "FLANNEL_IPMASQ=1\n",
			wantCode: 1, wantErr: "invalid value of FLANNEL_IPMASQ: '1'"},
		{name: "FLANNEL_IPMASQ=yes", input: network + subnet + mtu + "FLANNEL_IPMASQ=yes\n",
			wantCode: 1, wantErr: "invalid value of FLANNEL_IPMASQ: 'yes' (want true or false)"},
		{name: "FLANNEL_IPMASQ=yes with -m", input: network + subnet + mtu + "FLANNEL_IPMASQ=yes\n", args: []string{"-m"},
			wantCode: 1, wantErr: "invalid value of FLANNEL_IPMASQ: 'yes'"},
		{name: "FLANNEL_IPMASQ empty", input: network + subnet + mtu + "FLANNEL_IPMASQ=\n",
			wantCode: 1, wantErr: "invalid value of FLANNEL_IPMASQ: ''"},
		{name: "FLANNEL_IPMASQ=True", input: network + subnet + mtu + "FLANNEL_IPMASQ=True\n",
			wantCode: 1, wantErr: "invalid value of FLANNEL_IPMASQ: 'True'"},
		{name: "MTU too small", input: network + subnet + "FLANNEL_MTU=67\n" + masq, wantCode: 1, wantErr: "malformed FLANNEL_MTU '67' (want an integer 68-65535)"},
		{name: "MTU too large", input: network + subnet + "FLANNEL_MTU=65536\n" + masq, wantCode: 1, wantErr: "malformed FLANNEL_MTU '65536'"},
		{name: "MTU overflows", input: network + subnet + "FLANNEL_MTU=99999999999999999999999\n" + masq, wantCode: 1, wantErr: "malformed FLANNEL_MTU"},
		{name: "MTU with a leading zero", input: network + subnet + "FLANNEL_MTU=01450\n" + masq, wantCode: 1, wantErr: "malformed FLANNEL_MTU '01450'"},
		{name: "MTU negative", input: network + subnet + "FLANNEL_MTU=-1\n" + masq, wantCode: 1, wantErr: "malformed FLANNEL_MTU '-1'"},
		{name: "MTU not a number", input: network + subnet + "FLANNEL_MTU=1450abc\n" + masq, wantCode: 1, wantErr: "malformed FLANNEL_MTU"},
		{name: "network with host bits", input: "FLANNEL_NETWORK=10.244.0.1/16\n" + subnet + mtu + masq, wantCode: 1, wantErr: "malformed FLANNEL_NETWORK '10.244.0.1/16'"},
		{name: "network with host bits in a partial octet", input: "FLANNEL_NETWORK=10.245.0.0/15\n" + subnet + mtu + masq, wantCode: 1, wantErr: "malformed FLANNEL_NETWORK '10.245.0.0/15'"},
		{name: "network length 33", input: "FLANNEL_NETWORK=10.244.0.0/33\n" + subnet + mtu + masq, wantCode: 1, wantErr: "malformed FLANNEL_NETWORK"},
		{name: "network without length", input: "FLANNEL_NETWORK=10.244.0.0\n" + subnet + mtu + masq, wantCode: 1, wantErr: "malformed FLANNEL_NETWORK"},
		{name: "network with two lengths", input: "FLANNEL_NETWORK=10.244.0.0/16/8\n" + subnet + mtu + masq, wantCode: 1, wantErr: "malformed FLANNEL_NETWORK"},
		{name: "network IPv6", input: "FLANNEL_NETWORK=fd00::/56\n" + subnet + mtu + masq, wantCode: 1, wantErr: "malformed FLANNEL_NETWORK"},
		{name: "subnet octet 256", input: network + "FLANNEL_SUBNET=10.256.51.1/24\n" + mtu + masq, wantCode: 1, wantErr: "malformed FLANNEL_SUBNET '10.256.51.1/24'"},
		{name: "subnet with three octets", input: network + "FLANNEL_SUBNET=10.244.51/24\n" + mtu + masq, wantCode: 1, wantErr: "malformed FLANNEL_SUBNET"},
		{name: "subnet with five octets", input: network + "FLANNEL_SUBNET=10.244.51.1.1/24\n" + mtu + masq, wantCode: 1, wantErr: "malformed FLANNEL_SUBNET"},
		{name: "subnet with a leading zero", input: network + "FLANNEL_SUBNET=10.244.051.1/24\n" + mtu + masq, wantCode: 1, wantErr: "malformed FLANNEL_SUBNET"},
		{name: "subnet length with a leading zero", input: network + "FLANNEL_SUBNET=10.244.51.1/024\n" + mtu + masq, wantCode: 1, wantErr: "malformed FLANNEL_SUBNET"},
		{name: "subnet quoted", input: network + "FLANNEL_SUBNET=\"10.244.51.1/24\"\n" + mtu + masq, wantCode: 1, wantErr: "malformed FLANNEL_SUBNET"},
		{name: "subnet with a space inside", input: network + "FLANNEL_SUBNET=10.244.51.1/24 --debug\n" + mtu + masq, wantCode: 1, wantErr: "malformed FLANNEL_SUBNET"},
		{name: "missing FLANNEL_MTU", input: network + subnet + masq, wantCode: 1, wantErr: "has no FLANNEL_MTU"},
		{name: "missing FLANNEL_NETWORK", input: subnet + mtu + masq, wantCode: 1, wantErr: "has no FLANNEL_NETWORK"},
		{name: "missing FLANNEL_IPMASQ", input: network + subnet + mtu, wantCode: 1, wantErr: "has no FLANNEL_IPMASQ"},
		{name: "empty file", input: "", wantCode: 1, wantErr: "has no FLANNEL_NETWORK"},
		{name: "combined value from the environment with code", input: network + subnet + mtu + masq,
			env: []string{"DOCKER_OPTS=$(touch MARKER)"}, wantCode: 1, wantErr: "$DOCKER_OPTS in the environment contains a quote"},
		{name: "combined value from the environment with a quote", input: network + subnet + mtu + masq,
			env: []string{`DOCKER_OPTS=--label="x"`}, wantCode: 1, wantErr: "contains a quote"},
		{name: "DOCKER_OPT_* with code", input: network + subnet + mtu + masq, env: []string{"DOCKER_OPT_X=$(touch MARKER)"},
			wantCode: 1, wantErr: "$DOCKER_OPT_X in the environment contains a quote, backslash, dollar, backquote or newline: '$(touch "},
		{name: "DOCKER_OPT_* with backquotes", input: network + subnet + mtu + masq, env: []string{"DOCKER_OPT_X=`touch MARKER`"},
			wantCode: 1, wantErr: "$DOCKER_OPT_X in the environment contains"},
		{name: "DOCKER_OPT_* with a quote", input: network + subnet + mtu + masq, env: []string{`DOCKER_OPT_LABEL=--label="a b"`},
			wantCode: 1, wantErr: "$DOCKER_OPT_LABEL in the environment contains a quote"},
		{name: "DOCKER_OPT_* with a newline", input: network + subnet + mtu + masq, env: []string{"DOCKER_OPT_X=--a\nDOCKER_OPT_Y=--b"},
			wantCode: 1, wantErr: "$DOCKER_OPT_X in the environment contains"},
		{name: "DOCKER_OPT_* with a backslash", input: network + subnet + mtu + masq, env: []string{`DOCKER_OPT_X=--a\`},
			wantCode: 1, wantErr: "$DOCKER_OPT_X in the environment contains"},
		{name: "-k not a variable name", input: network + subnet + mtu + masq, args: []string{"-k", "1DOCKER"},
			wantCode: 2, wantErr: "-k '1DOCKER' is not a valid variable name"},
		{name: "-k with code", input: network + subnet + mtu + masq, args: []string{"-k", "X;touch MARKER"},
			wantCode: 2, wantErr: "is not a valid variable name"},
		{name: "unknown option", input: network + subnet + mtu + masq, args: []string{"-x"}, wantCode: 2, wantErr: "unknown option -x"},
		{name: "option without its argument", input: network + subnet + mtu + masq, args: []string{"-k"}, wantCode: 2, wantErr: "option -k needs an argument"},
		{name: "an operand", input: network + subnet + mtu + masq, args: []string{"extra"}, wantCode: 2, wantErr: "unexpected argument 'extra'"},
	}
	for runnerName, runner := range scriptRunners(t) {
		for _, tc := range tests {
			t.Run(runnerName+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				marker := filepath.Join(dir, "marker")
				subnetFile := filepath.Join(dir, "subnet.env")
				if tc.input != noFile {
					if err := os.WriteFile(subnetFile, []byte(strings.ReplaceAll(tc.input, "MARKER", marker)), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				outDir := filepath.Join(dir, "out")
				if err := os.Mkdir(outDir, 0o755); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(outDir, "docker_opts.env")
				const previous = "DOCKER_OPTS=\" --bip=10.9.9.1/24 --mtu=1400\"\n"
				if err := os.WriteFile(out, []byte(previous), 0o644); err != nil {
					t.Fatal(err)
				}
				env := make([]string, len(tc.env))
				for i, e := range tc.env {
					env[i] = strings.ReplaceAll(e, "MARKER", marker)
				}
				args := append([]string{"-f", subnetFile, "-d", out}, tc.args...)
				for i, a := range args {
					args[i] = strings.ReplaceAll(a, "MARKER", marker)
				}
				res := runScript(t, runner, dir, env, args...)
				if res.code != tc.wantCode {
					t.Errorf("exit %d, want %d (stderr %q)", res.code, tc.wantCode, res.stderr)
				}
				if !strings.Contains(res.stderr, tc.wantErr) {
					t.Errorf("stderr %q does not contain %q", res.stderr, tc.wantErr)
				}
				if got, err := os.ReadFile(out); err != nil || string(got) != previous {
					t.Errorf("output file touched: %q, %v", got, err)
				}
				if names := dirEntries(t, outDir); !slices.Equal(names, []string{"docker_opts.env"}) {
					t.Errorf("output directory holds %q; want only docker_opts.env", names)
				}
				if _, err := os.Stat(marker); err == nil {
					t.Errorf("input was executed: %s exists", marker)
				}
			})
		}
	}
}

// TestMkDockerOptsOutputDirMissing: a -d in a directory that does not exist fails cleanly.
func TestMkDockerOptsOutputDirMissing(t *testing.T) {
	for runnerName, runner := range scriptRunners(t) {
		t.Run(runnerName, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "no", "such", "docker_opts.env")
			res := runScript(t, runner, dir, nil, "-f", goldenPath(t, "subnet.env"), "-d", out)
			if res.code != 1 || !strings.Contains(res.stderr, "directory "+filepath.Join(dir, "no", "such")+" of "+out+" does not exist") {
				t.Errorf("exit %d, stderr %q; want 1 and a message naming the directory", res.code, res.stderr)
			}
		})
	}
}

func TestMkDockerOptsHelp(t *testing.T) {
	runner := scriptRunners(t)["shebang"]
	res := runScript(t, runner, "", nil, "-h")
	if res.code != 0 || !strings.Contains(res.stdout, "Usage: mk-docker-opts.sh [-f FLANNEL-ENV-FILE]") {
		t.Errorf("-h: exit %d, stdout %q", res.code, res.stdout)
	}
	for _, opt := range []string{"-f", "-d", "-i", "-c", "-k", "-m", "-6"} {
		if !strings.Contains(res.stdout, "\t"+opt+"\t") {
			t.Errorf("usage does not document %s", opt)
		}
	}
}

func TestMkDockerOptsShellcheck(t *testing.T) {
	shellcheck := lookTool(t, "shellcheck", "shellcheck")
	res := run(t, nil, "", shellcheck, "-s", "sh", scriptPath)
	if res.code != 0 {
		t.Errorf("shellcheck -s sh %s: exit %d\n%s%s", scriptPath, res.code, res.stdout, res.stderr)
	}
}

// TestMkDockerOptsExecutable: the mode is what the Dockerfile copies and the drop-in runs.
func TestMkDockerOptsExecutable(t *testing.T) {
	fi, err := os.Stat(scriptPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 != 0o111 {
		t.Errorf("%s has mode %v; want it executable (chmod 0755)", scriptPath, fi.Mode())
	}
	data, _ := os.ReadFile(scriptPath)
	if !strings.HasPrefix(string(data), "#!/bin/sh\n") {
		t.Errorf("%s must start with #!/bin/sh", scriptPath)
	}
	for _, bad := range []string{"\n. ", "\nsource ", " source ", "$(cat"} {
		if strings.Contains(string(data), bad) {
			t.Errorf("%s contains %q: it must read the subnet file as data", scriptPath, bad)
		}
	}
}
