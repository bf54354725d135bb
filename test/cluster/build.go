package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// ModulePath is the module whose root Build and the default weftd build look for.
const ModulePath = "github.com/weftnet/weft"

// BuildTimeout bounds one `go build`.
const BuildTimeout = 5 * time.Minute

// builtWeftd is the weftd binary built from source, once per process (every cluster in a
// test binary shares it). It is the package's only package-level state, and it is write-once.
var builtWeftd struct {
	once sync.Once
	path string
	err  error
}

// weftdBinary is the weftd a cluster runs: a given path, or the per-process build.
type weftdBinary struct{ path string }

func (b *weftdBinary) resolve() (string, error) {
	if b.path != "" {
		return b.path, nil
	}
	builtWeftd.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
		defer cancel()
		builtWeftd.path, builtWeftd.err = buildShared(ctx, "./cmd/weftd", "weftd")
	})
	return builtWeftd.path, builtWeftd.err
}

// buildShared builds pkg to <os.TempDir()>/weft-cluster-bin/<name>-<module root hash>: one
// file per checkout however many test processes run, so nothing piles up in /tmp. Each
// build goes to a private name and is renamed into place, so concurrent processes never
// see a partial file, and a process running the old file keeps its inode.
func buildShared(ctx context.Context, pkg, name string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), "weft-cluster-bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(root))
	final := filepath.Join(dir, fmt.Sprintf("%s-%x", name, sum[:6]))
	tmp := fmt.Sprintf("%s.%d.tmp", final, os.Getpid())
	if err := Build(ctx, pkg, tmp); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return final, nil
}

// Build runs `go build -o out pkg` in the module root, for pkg given relative to it (e.g.
// "./cmd/weftctl"), bounded by ctx and BuildTimeout.
func Build(ctx context.Context, pkg, out string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	goTool, err := goBinary()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, BuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -o %s %s (in %s): %w\n%s", out, pkg, root, err, b)
	}
	return nil
}

// ModuleRoot finds the directory holding this module's go.mod: upwards from the working
// directory, else upwards from this source file's directory.
func ModuleRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if isModuleRoot(dir) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("no go.mod for %s above %s", ModulePath, strings.Join(starts, " or "))
}

func isModuleRoot(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "module" {
			return f[1] == ModulePath
		}
	}
	return false
}

func goBinary() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	var candidates []string
	if root := os.Getenv("GOROOT"); root != "" {
		candidates = append(candidates, filepath.Join(root, "bin", "go"))
	}
	candidates = append(candidates, "/usr/local/go/bin/go")
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("the go tool is not on PATH nor in GOROOT/bin or /usr/local/go/bin")
}
