package dist

import (
	"bufio"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Readers of the Dockerfile and the Makefile, for static checks (no docker engine runs
// here), and a shell-word splitter that expands nothing.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int    // where it starts, 1-based
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// stage is one FROM ... section.
type stage struct {
	image, name string
	instrs      []instruction
}

type dockerfile struct{ stages []stage }

// parseDockerfile reads the repository's Dockerfile: comments and blank lines dropped,
// lines ending in a backslash joined with the next.
func parseDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	df, err := parseDockerfileText(string(readRepoFile(t, "Dockerfile")))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return df
}

func parseDockerfileText(text string) (*dockerfile, error) {
	df := &dockerfile{}
	var pending strings.Builder
	start := 0
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && pending.Len() == 0) {
			continue
		}
		if pending.Len() == 0 {
			start = n
		}
		if cont, ok := strings.CutSuffix(trimmed, `\`); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(trimmed)
		cmd, args, _ := strings.Cut(strings.TrimSpace(pending.String()), " ")
		pending.Reset()
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				return nil, fmt.Errorf("line %d: FROM %s: want IMAGE [AS NAME]", n, in.args)
			}
			df.stages = append(df.stages, st)
			continue
		}
		if len(df.stages) == 0 {
			if in.cmd == "ARG" {
				continue // a global ARG before the first FROM
			}
			return nil, fmt.Errorf("line %d: %s before the first FROM", n, in.cmd)
		}
		df.stages[len(df.stages)-1].instrs = append(df.stages[len(df.stages)-1].instrs, in)
	}
	if pending.Len() > 0 {
		return nil, fmt.Errorf("the last instruction ends in a backslash")
	}
	if len(df.stages) == 0 {
		return nil, fmt.Errorf("no FROM")
	}
	return df, nil
}

func (st stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range st.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// copyInstr is a parsed COPY: its --from stage (or ""), sources and destination.
type copyInstr struct {
	line int
	from string
	srcs []string
	dst  string
}

func parseCopy(in instruction) (copyInstr, error) {
	c := copyInstr{line: in.line}
	f := strings.Fields(in.args)
	for len(f) > 0 && strings.HasPrefix(f[0], "--") {
		if v, ok := strings.CutPrefix(f[0], "--from="); ok {
			c.from = v
		}
		f = f[1:]
	}
	if len(f) < 2 {
		return c, fmt.Errorf("line %d: COPY %s: want SRC... DST", in.line, in.args)
	}
	c.srcs, c.dst = f[:len(f)-1], f[len(f)-1]
	return c, nil
}

func (st stage) copies(t *testing.T) []copyInstr {
	t.Helper()
	var out []copyInstr
	for _, in := range st.all("COPY") {
		c, err := parseCopy(in)
		if err != nil {
			t.Fatalf("Dockerfile: %v", err)
		}
		out = append(out, c)
	}
	return out
}

func (st stage) workdir() string {
	dir := "/"
	for _, in := range st.all("WORKDIR") {
		dir = path.Join(dir, in.args)
	}
	return dir
}

func (df *dockerfile) final() stage { return df.stages[len(df.stages)-1] }

// buildStage is the stage that runs `go build`.
func (df *dockerfile) buildStage(t *testing.T) stage {
	t.Helper()
	for _, st := range df.stages {
		for _, in := range st.all("RUN") {
			if strings.Contains(in.args, "go build") {
				return st
			}
		}
	}
	t.Fatal("Dockerfile: no stage runs go build")
	return stage{}
}

// weftdPath is where the final stage installs weftd: the destination of the COPY --from
// the build stage.
func (df *dockerfile) weftdPath(t *testing.T) string {
	t.Helper()
	build := df.buildStage(t)
	for _, c := range df.final().copies(t) {
		if c.from == build.name && len(c.srcs) == 1 && path.Base(c.srcs[0]) == "weftd" {
			return c.dst
		}
	}
	t.Fatal("Dockerfile: the final stage copies no weftd from the build stage")
	return ""
}

// scriptPath is where the final stage installs mk-docker-opts.sh.
func (df *dockerfile) scriptPath(t *testing.T) string {
	t.Helper()
	for _, c := range df.final().copies(t) {
		if c.from == "" && slices.Equal(c.srcs, []string{"dist/mk-docker-opts.sh"}) {
			return c.dst
		}
	}
	t.Fatal("Dockerfile: the final stage does not copy dist/mk-docker-opts.sh")
	return ""
}

// shellWords splits a shell command line into words, honouring single quotes, double
// quotes and backslashes, and expanding nothing ("$X" stays "$X"). The operators ;, &&, ||
// and | are words of their own.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ' || c == '\t' || c == '\n':
			flush()
		case c == ';' || c == '&' || c == '|':
			flush()
			op := string(c)
			if i+1 < len(s) && s[i+1] == c && c != ';' {
				op += string(c)
				i++
			}
			if op == "&" {
				return nil, fmt.Errorf("background & in %q", s)
			}
			words = append(words, op)
		case c == '\\':
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
				inWord = true
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			inWord = true
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return words, nil
}

// commands splits words at ;, && and || into simple commands.
func commands(words []string) [][]string {
	var out [][]string
	var cur []string
	for _, w := range words {
		if w == ";" || w == "&&" || w == "||" {
			out = append(out, cur)
			cur = nil
			continue
		}
		cur = append(cur, w)
	}
	return append(out, cur)
}

// goBuildCommand returns the one simple command of lines that runs `go build`.
func goBuildCommand(lines []string) ([]string, error) {
	var found [][]string
	for _, l := range lines {
		words, err := shellWords(l)
		if err != nil {
			return nil, err
		}
		for _, cmd := range commands(words) {
			for i := 0; i+1 < len(cmd); i++ {
				if cmd[i] == "go" && cmd[i+1] == "build" {
					found = append(found, cmd)
					break
				}
			}
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("want exactly one go build command, found %d in %q", len(found), lines)
	}
	return found[0], nil
}

// versionPlaceholder stands for the version string in both files: $(VERSION) in the
// Makefile, ${VERSION} (the build ARG) in the Dockerfile.
const versionPlaceholder = "@VERSION@"

// makefile holds the variables and rule recipes of a Makefile.
type makefile struct {
	vars    map[string]string
	recipes map[string][]string
}

var (
	makeVarRe    = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*(\?=|:=|\+=|=)\s*(.*)$`)
	makeTargetRe = regexp.MustCompile(`^([A-Za-z0-9_./-]+)\s*:([^=].*)?$`)
	makeRefRe    = regexp.MustCompile(`\$\(([^()]*)\)|\$\{([^{}]*)\}`)
)

func parseMakefile(text string) makefile {
	m := makefile{vars: map[string]string{}, recipes: map[string][]string{}}
	lines := strings.Split(text, "\n")
	target := ""
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			line = strings.TrimRight(strings.TrimSuffix(line, `\`), " \t") + " " + strings.TrimSpace(lines[i])
		}
		if strings.HasPrefix(line, "\t") {
			if target != "" {
				m.recipes[target] = append(m.recipes[target], strings.TrimLeft(strings.TrimSpace(line), "@-+"))
			}
			continue
		}
		target = ""
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if sub := makeVarRe.FindStringSubmatch(line); sub != nil {
			name, op, value := sub[1], sub[2], strings.TrimSpace(sub[3])
			switch _, set := m.vars[name]; {
			case op == "+=" && set:
				m.vars[name] += " " + value
			case op == "?=" && set:
			default:
				m.vars[name] = value
			}
			continue
		}
		if sub := makeTargetRe.FindStringSubmatch(line); sub != nil {
			target = sub[1]
			m.recipes[target] = nil
		}
	}
	return m
}

// expand expands $(VAR) and ${VAR} references recursively, as make does, with VERSION
// kept as versionPlaceholder; $$ is a dollar. A make function ($(shell ...)) is an error.
func (m makefile) expand(s string, depth int) (string, error) {
	if depth > 20 {
		return "", fmt.Errorf("variable references nest too deep in %q", s)
	}
	var err error
	s = strings.ReplaceAll(s, "$$", "\x00")
	s = makeRefRe.ReplaceAllStringFunc(s, func(ref string) string {
		name := strings.Trim(ref[1:], "(){}")
		switch {
		case name == "VERSION":
			return versionPlaceholder
		case strings.ContainsAny(name, " \t,"):
			err = fmt.Errorf("cannot expand the make function %s", ref)
			return ""
		}
		v, e := m.expand(m.vars[name], depth+1)
		if e != nil {
			err = e
		}
		return strings.ReplaceAll(v, "$", "\x00") // already expanded: no second pass
	})
	return strings.ReplaceAll(s, "\x00", "$"), err
}

const staticTargetHint = `static:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/weftd ./cmd/weftd`

// makeStaticCommand is the go build command of the Makefile's static target, expanded.
func makeStaticCommand(t *testing.T) []string {
	t.Helper()
	m := parseMakefile(string(readRepoFile(t, "Makefile")))
	recipe, ok := m.recipes["static"]
	if !ok {
		t.Fatalf("the Makefile has no `static` target (the Dockerfile's build command must be the same); add:\n%s", staticTargetHint)
	}
	var lines []string
	for _, r := range recipe {
		l, err := m.expand(r, 0)
		if err != nil {
			t.Fatalf("Makefile static target: %v", err)
		}
		lines = append(lines, l)
	}
	cmd, err := goBuildCommand(lines)
	if err != nil {
		t.Fatalf("Makefile static target: %v", err)
	}
	return cmd
}

// dockerBuildCommand is the go build command of the Dockerfile's build stage, with the
// VERSION build argument as versionPlaceholder.
func dockerBuildCommand(t *testing.T, df *dockerfile) []string {
	t.Helper()
	build := df.buildStage(t)
	var lines []string
	argVersion := false
	for _, in := range build.instrs {
		switch in.cmd {
		case "ARG":
			if name, _, _ := strings.Cut(in.args, "="); name == "VERSION" {
				argVersion = true
			}
		case "RUN":
			if strings.Contains(in.args, "go build") {
				if strings.Contains(in.args, "VERSION") && !argVersion {
					t.Errorf("Dockerfile line %d uses VERSION before `ARG VERSION` in its stage", in.line)
				}
				lines = append(lines, in.args)
			}
		}
	}
	cmd, err := goBuildCommand(lines)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for i, w := range cmd {
		w = strings.ReplaceAll(w, "${VERSION}", versionPlaceholder)
		cmd[i] = strings.ReplaceAll(w, "$VERSION", versionPlaceholder)
	}
	return cmd
}

// flagValue returns the value of a go build flag (-o out or -o=out), or "".
func flagValue(cmd []string, name string) string {
	for i, w := range cmd {
		if w == name && i+1 < len(cmd) {
			return cmd[i+1]
		}
		if v, ok := strings.CutPrefix(w, name+"="); ok {
			return v
		}
	}
	return ""
}

// TestShellWords pins the tokenizer the build-command comparison relies on.
func TestShellWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{`CGO_ENABLED=0 go build -ldflags '-s -w -X main.version=$(V)' -o bin/ ./cmd/...`,
			[]string{"CGO_ENABLED=0", "go", "build", "-ldflags", "-s -w -X main.version=$(V)", "-o", "bin/", "./cmd/..."}},
		{`go build -ldflags "-s -w -X main.version=${VERSION}" x`, []string{"go", "build", "-ldflags", "-s -w -X main.version=${VERSION}", "x"}},
		{`a "b\"c" d\ e 'f"g'`, []string{"a", `b"c`, "d e", `f"g`}},
		{`a&&b ; c || d|e`, []string{"a", "&&", "b", ";", "c", "||", "d", "|", "e"}},
		{`x""y`, []string{"xy"}},
		{`""`, []string{""}},
	}
	for _, tc := range tests {
		got, err := shellWords(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`a 'b`, `a "b`, `a & b`} {
		if _, err := shellWords(bad); err == nil {
			t.Errorf("shellWords(%q): no error", bad)
		}
	}
}

// TestMakeExpand pins the Makefile reader on the shapes the repository's Makefile uses.
func TestMakeExpand(t *testing.T) {
	m := parseMakefile("GO ?= go\nVERSION ?= $(shell git describe)\nLDFLAGS := -s -w -X main.version=$(VERSION)\n" +
		"FLAGS = -a\nFLAGS += -b\n\n.PHONY: static\nstatic: deps\n\t@CGO_ENABLED=0 $(GO) build ${FLAGS} -ldflags '$(LDFLAGS)' \\\n\t\t-o bin/x ./cmd/x\n\techo $$HOME\nother:\n\ttrue\n")
	if got := m.recipes["static"]; len(got) != 2 {
		t.Fatalf("static recipe %q", got)
	}
	got, err := m.expand(m.recipes["static"][0], 0)
	want := "CGO_ENABLED=0 go build -a -b -ldflags '-s -w -X main.version=" + versionPlaceholder + "' -o bin/x ./cmd/x"
	if err != nil || got != want {
		t.Errorf("expand = %q, %v; want %q", got, err, want)
	}
	if got, _ := m.expand(m.recipes["static"][1], 0); got != "echo $HOME" {
		t.Errorf("$$ expands to %q", got)
	}
	if _, err := m.expand("$(shell date)", 0); err == nil {
		t.Error("a make function expanded without error")
	}
}
