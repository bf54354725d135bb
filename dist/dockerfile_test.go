package dist

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Checks of the Dockerfile against the Makefile, the repository and go.mod, and of the
// binary its build command produces. The readers are in dockerfile_parse_test.go.

func TestDockerfileBuildCommandIsMakeStatic(t *testing.T) {
	df := parseDockerfile(t)
	docker := dockerBuildCommand(t, df)
	mk := makeStaticCommand(t)
	if !slices.Equal(docker, mk) {
		t.Errorf("the Dockerfile's build command differs from `make static`:\nDockerfile: %q\nMakefile:   %q", docker, mk)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath"} {
		if !slices.Contains(docker, want) {
			t.Errorf("the build command %q lacks %s", docker, want)
		}
	}
	if !strings.Contains(flagValue(docker, "-ldflags"), "-X main.version="+versionPlaceholder) {
		t.Errorf("the build command does not stamp the version: -ldflags %q", flagValue(docker, "-ldflags"))
	}
}

// TestDockerfileCopies: every COPY source exists, the final stage takes weftd from where
// the build writes it, and every package weftd is built from is copied into the build.
func TestDockerfileCopies(t *testing.T) {
	df := parseDockerfile(t)
	names := map[string]bool{}
	for _, st := range df.stages {
		if st.name != "" {
			names[st.name] = true
		}
		for _, c := range st.copies(t) {
			if c.from != "" {
				if !names[c.from] {
					t.Errorf("Dockerfile line %d: COPY --from=%s names no earlier stage", c.line, c.from)
				}
				continue
			}
			for _, src := range c.srcs {
				matches, err := filepath.Glob(filepath.Join(repoRoot, filepath.FromSlash(src)))
				if err != nil || len(matches) == 0 {
					t.Errorf("Dockerfile line %d: COPY source %s does not exist in the repository", c.line, src)
				}
			}
		}
	}

	// The binary the final stage copies is the one the build command writes.
	build := df.buildStage(t)
	out := flagValue(dockerBuildCommand(t, df), "-o")
	if out == "" {
		t.Fatal("the build command has no -o")
	}
	want := path.Join(build.workdir(), out)
	found := false
	for _, c := range df.final().copies(t) {
		if c.from == build.name && slices.Contains(c.srcs, want) {
			found = true
		}
	}
	if !found {
		t.Errorf("the final stage does not COPY --from=%s %s (the build's -o %s in WORKDIR %s)", build.name, want, out, build.workdir())
	}

	// Every package of this module that weftd imports is under a directory the build stage
	// copies to the same place, and go.mod and go.sum are copied.
	copied := map[string]bool{}
	for _, c := range build.copies(t) {
		for _, src := range c.srcs {
			src = path.Clean(src)
			// A directory's content lands in the destination; a file lands inside a
			// destination ending in a slash.
			target := path.Clean(c.dst)
			if fi, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(src))); err == nil && !fi.IsDir() && strings.HasSuffix(c.dst, "/") {
				target = path.Join(c.dst, path.Base(src))
			}
			if target != src {
				t.Errorf("Dockerfile line %d: COPY %s to %s: the build stage must keep repository paths (relative to WORKDIR)", c.line, src, c.dst)
			}
			copied[src] = true
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if !copied[f] {
			t.Errorf("the build stage does not copy %s", f)
		}
	}
	res := run(t, os.Environ(), repoRoot, "go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./cmd/weftd")
	if res.code != 0 {
		t.Fatalf("go list: %s", res.stderr)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range strings.Fields(res.stdout) {
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		rel = filepath.ToSlash(rel)
		covered := false
		for src := range copied {
			if src == "." || rel == src || strings.HasPrefix(rel, src+"/") {
				covered = true
			}
		}
		if !covered {
			t.Errorf("weftd needs package directory %s, which the Dockerfile's build stage does not copy", rel)
		}
	}
}

// goVersion parses "1.26.8" (or "1.26") into numbers.
func goVersion(s string) ([]int, error) {
	var v []int
	for _, p := range strings.Split(s, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("version %q: %w", s, err)
		}
		v = append(v, n)
	}
	if len(v) < 2 || len(v) > 3 {
		return nil, fmt.Errorf("version %q: want MAJOR.MINOR[.PATCH]", s)
	}
	return v, nil
}

// TestDockerfileImages: the build image's Go is the go.mod version (the golang images set
// GOTOOLCHAIN=local, so an older Go cannot build the module), the run image is Debian slim
// with iptables, and weftd is the entry point.
func TestDockerfileImages(t *testing.T) {
	df := parseDockerfile(t)
	build := df.buildStage(t)
	tagRe := regexp.MustCompile(`^golang:(\d+\.\d+(?:\.\d+)?)-(bookworm|trixie|bullseye)$`)
	sub := tagRe.FindStringSubmatch(build.image)
	if sub == nil {
		t.Fatalf("build image %s: want golang:<go version>-<Debian release>", build.image)
	}
	imageGo, err := goVersion(sub[1])
	if err != nil {
		t.Fatal(err)
	}
	var modGo string
	for _, line := range strings.Split(string(readRepoFile(t, "go.mod")), "\n") {
		if f := strings.Fields(line); len(f) == 2 && (f[0] == "go" || f[0] == "toolchain") {
			modGo = strings.TrimPrefix(f[1], "go") // the toolchain line, if any, wins
		}
	}
	want, err := goVersion(modGo)
	if err != nil {
		t.Fatalf("go.mod: %v", err)
	}
	if imageGo[0] != want[0] || imageGo[1] != want[1] || (len(imageGo) == 3 && len(want) == 3 && imageGo[2] < want[2]) {
		t.Errorf("build image %s has Go %s; go.mod needs Go %s (same minor release, at least that patch)", build.image, sub[1], modGo)
	}

	final := df.final()
	if !regexp.MustCompile(`^debian:[a-z]+-slim$`).MatchString(final.image) {
		t.Errorf("run image %s: want debian:<release>-slim", final.image)
	}
	installsIptables := false
	for _, in := range final.all("RUN") {
		words, err := shellWords(in.args)
		if err != nil {
			t.Fatal(err)
		}
		for _, cmd := range commands(words) {
			if i := slices.Index(cmd, "apt-get"); i >= 0 && slices.Contains(cmd[i:], "install") && slices.Contains(cmd[i:], "iptables") {
				installsIptables = true
			}
		}
	}
	if !installsIptables {
		t.Error("the run stage does not apt-get install iptables")
	}
	entry := final.all("ENTRYPOINT")
	if len(entry) != 1 {
		t.Fatalf("want one ENTRYPOINT in the run stage, found %d", len(entry))
	}
	var argv []string
	if err := json.Unmarshal([]byte(entry[0].args), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("ENTRYPOINT %s: want the exec (JSON array) form: %v", entry[0].args, err)
	}
	if argv[0] != df.weftdPath(t) {
		t.Errorf("ENTRYPOINT runs %s, but weftd is installed at %s", argv[0], df.weftdPath(t))
	}
	for _, u := range final.all("USER") {
		if u.args != "root" && u.args != "0" {
			t.Errorf("USER %s: weftd needs root bounded to NET_ADMIN and NET_RAW (see the comment in the Dockerfile)", u.args)
		}
	}
	if df.scriptPath(t) != "/usr/local/bin/mk-docker-opts.sh" {
		t.Errorf("mk-docker-opts.sh is installed at %s, not where docker-weft.conf runs it", df.scriptPath(t))
	}
}

// buildWeftd runs the Dockerfile's build command (which is `make static`) in the
// repository, writing the binary into a temporary directory, with VERSION=version.
func buildWeftd(t *testing.T, version string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds weftd; skipped with -short")
	}
	cmd := dockerBuildCommand(t, parseDockerfile(t))
	bin := filepath.Join(t.TempDir(), "weftd")
	env := os.Environ()
	var argv []string
	for i := 0; i < len(cmd); i++ {
		w := strings.ReplaceAll(cmd[i], versionPlaceholder, version)
		switch {
		case len(argv) == 0 && strings.Contains(w, "=") && !strings.HasPrefix(w, "-"):
			env = append(env, w) // a leading VAR=value assignment
		case w == "-o":
			argv = append(argv, w, bin)
			i++
		default:
			argv = append(argv, w)
		}
	}
	res := run(t, env, repoRoot, argv[0], argv[1:]...)
	if res.code != 0 {
		t.Fatalf("%s: exit %d\n%s", strings.Join(argv, " "), res.code, res.stderr)
	}
	return bin
}

// TestStaticBuild builds weftd with the image's command and checks the result is what the
// flags promise: static (no ELF interpreter, no shared libraries), stripped (-s), no build
// paths (-trimpath), and stamped with the version.
func TestStaticBuild(t *testing.T) {
	bin := buildWeftd(t, "dist-test")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("weftd has a %v program header: it is dynamically linked", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("weftd imports shared libraries %q (%v)", libs, err)
	}
	if f.Section(".symtab") != nil {
		t.Error("weftd has a symbol table: -ldflags -s missing")
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(root+"/")) {
		t.Errorf("weftd contains the build path %s: -trimpath missing", root)
	}
	res := run(t, nil, "", bin, "--version")
	if res.code != 0 || strings.TrimSpace(res.stdout) != "weftd dist-test" {
		t.Errorf("weftd --version: exit %d, %q; want \"weftd dist-test\"", res.code, res.stdout)
	}
}
