package iptables

import (
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	goipt "github.com/coreos/go-iptables/iptables"
	"github.com/go-logr/logr/testr"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/nstest"
)

// These tests run the real iptables inside throwaway namespaces. Three guards keep the
// machine's own rules safe: the Manager runs only inside nsutil.Do; nsRunner panics before
// any iptables command issued from a thread outside the test's namespace; and rootUnchanged
// compares the root namespace's rules (read with iptables-save) before and after.

// nsRunner is the real go-iptables runner, refusing to run outside one namespace and
// recording the method of each call.
type nsRunner struct {
	ipt     *goipt.IPTables
	restore cmdRunner // the same front end's iptables-restore
	ns      netns.NsHandle

	mu    sync.Mutex // guards calls
	calls []string
}

func (g *nsRunner) enter(method string) {
	cur, err := netns.Get()
	if err != nil {
		panic(fmt.Sprintf("iptables %s: cannot read the thread's namespace: %v", method, err))
	}
	defer cur.Close()
	if !cur.Equal(g.ns) {
		panic(fmt.Sprintf("iptables %s called from a thread outside the test namespace", method))
	}
	g.mu.Lock()
	g.calls = append(g.calls, method)
	g.mu.Unlock()
}

func (g *nsRunner) takeCalls() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.calls
	g.calls = nil
	return c
}

func (g *nsRunner) List(table, chain string) ([]string, error) {
	g.enter("List")
	return g.ipt.List(table, chain)
}
func (g *nsRunner) ChainExists(table, chain string) (bool, error) {
	g.enter("ChainExists")
	return g.ipt.ChainExists(table, chain)
}
func (g *nsRunner) NewChain(table, chain string) error {
	g.enter("NewChain")
	return g.ipt.NewChain(table, chain)
}
func (g *nsRunner) Exists(table, chain string, spec ...string) (bool, error) {
	g.enter("Exists")
	return g.ipt.Exists(table, chain, spec...)
}
func (g *nsRunner) Insert(table, chain string, pos int, spec ...string) error {
	g.enter("Insert")
	return g.ipt.Insert(table, chain, pos, spec...)
}
func (g *nsRunner) Append(table, chain string, spec ...string) error {
	g.enter("Append")
	return g.ipt.Append(table, chain, spec...)
}
func (g *nsRunner) Replace(table, chain string, pos int, spec ...string) error {
	g.enter("Replace")
	return g.ipt.Replace(table, chain, pos, spec...)
}
func (g *nsRunner) DeleteById(table, chain string, pos int) error {
	g.enter("DeleteById")
	return g.ipt.DeleteById(table, chain, pos)
}
func (g *nsRunner) Delete(table, chain string, spec ...string) error {
	g.enter("Delete")
	return g.ipt.Delete(table, chain, spec...)
}
func (g *nsRunner) ClearAndDeleteChain(table, chain string) error {
	g.enter("ClearAndDeleteChain")
	return g.ipt.ClearAndDeleteChain(table, chain)
}
func (g *nsRunner) Restore(table string, lines []string) error {
	g.enter("Restore")
	return g.restore.Restore(table, lines)
}

// nsSets is the real netlink ip_set, refusing to run outside the namespace of r.
type nsSets struct{ r *nsRunner }

func (s nsSets) List(name string) ([]netip.Addr, bool, error) {
	s.r.enter("ipset List")
	return netlinkSets{}.List(name)
}
func (s nsSets) Create(name string, f firewall.Family) error {
	s.r.enter("ipset Create")
	return netlinkSets{}.Create(name, f)
}
func (s nsSets) Add(name string, a netip.Addr) error {
	s.r.enter("ipset Add")
	return netlinkSets{}.Add(name, a)
}
func (s nsSets) Del(name string, a netip.Addr) error {
	s.r.enter("ipset Del")
	return netlinkSets{}.Del(name, a)
}
func (s nsSets) Destroy(name string) error {
	s.r.enter("ipset Destroy")
	return netlinkSets{}.Destroy(name)
}

// nsEnv is one namespace with one iptables binary.
type nsEnv struct {
	name string // namespace
	bin  string // iptables, iptables-nft or iptables-legacy
	r    *nsRunner
	sets ipsets // nsSets by default
}

// newNSEnv makes a namespace for t and checks the root namespace's rules are the same at
// the end. It skips without root or without bin.
func newNSEnv(t testing.TB, bin string) *nsEnv {
	t.Helper()
	if err := nstest.Available(); err != nil {
		t.Skip(err)
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("%s not installed: %v", bin, err)
	}
	rootUnchanged(t)
	name := nstest.Temp(t, "ipt")
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ipt, err := goipt.New(goipt.Path(path), goipt.Timeout(lockWaitSeconds))
	if err != nil {
		t.Fatal(err)
	}
	restore, _ := exec.LookPath(bin + "-restore")
	r := &nsRunner{ipt: ipt, restore: cmdRunner{IPTables: ipt, restorePath: restore}, ns: h}
	return &nsEnv{name: name, bin: bin, r: r, sets: nsSets{r}}
}

func (e *nsEnv) manager(t *testing.T, opts Options) *Manager {
	return newManager(e.r, e.sets, e.r.ipt.HasRandomFully(), opts, testr.New(t))
}

// members lists the peer set in the namespace with the ipset tool (nil, false: no set).
func (e *nsEnv) members(t *testing.T) ([]string, bool) {
	t.Helper()
	return e.setMembers(t, PeerSet)
}

// setMembers lists the set name in the namespace with the ipset tool, sorted; ok is false
// when there is no set. It fails t unless the listing's header holds each of header.
func (e *nsEnv) setMembers(t *testing.T, name string, header ...string) (members []string, ok bool) {
	t.Helper()
	if _, err := exec.LookPath("ipset"); err != nil {
		t.Skipf("ipset not installed (make deps): %v", err)
	}
	out, err := nstest.Run(e.name, "ipset", "list", name)
	if err != nil {
		return nil, false
	}
	head, after, found := strings.Cut(out, "Members:\n")
	for _, h := range header {
		found = found && strings.Contains(head, h)
	}
	if !found {
		t.Fatalf("ipset list %s:\n%s", name, out)
	}
	members = strings.Fields(after)
	slices.Sort(members)
	return members, true
}

// do runs fn in the namespace.
func (e *nsEnv) do(t testing.TB, fn func() error) {
	t.Helper()
	if err := nsutil.Do(e.name, fn); err != nil {
		t.Fatal(err)
	}
}

// saveOf runs an *-save tool in the namespace.
func (e *nsEnv) saveOf(tool string) (string, error) {
	return nstest.Run(e.name, tool)
}

// runTool runs a command by hand in the namespace.
func (e *nsEnv) runTool(t *testing.T, args ...string) string {
	t.Helper()
	out, err := nstest.Run(e.name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// run runs the iptables binary by hand in the namespace.
func (e *nsEnv) run(t *testing.T, args ...string) string {
	t.Helper()
	return e.runTool(t, append([]string{e.bin, "-w"}, args...)...)
}

// rules lists a chain in the namespace, as iptables -S prints it, without "-A chain ".
func (e *nsEnv) rules(t *testing.T, table, chain string) []string {
	t.Helper()
	return e.listChain(t, e.bin, table, chain)
}

// listChain lists a chain with the front end bin (an iptables or ip6tables binary).
func (e *nsEnv) listChain(t *testing.T, bin, table, chain string) []string {
	t.Helper()
	return parseListing(chain, strings.Split(e.runTool(t, bin, "-w", "-t", table, "-S", chain), "\n"))
}

// wantRules returns the rendered rules the manager should keep in def's chain now.
func wantRules(t *testing.T, m *Manager, def *chainDef) []string {
	t.Helper()
	s := m.Inputs()
	m.syncMu.Lock()
	c := m.capsLocked()
	m.syncMu.Unlock()
	for _, p := range desired(m.opts, s, c) {
		if p.def == def {
			return renderAll(p.rules)
		}
	}
	return nil
}

func (e *nsEnv) checkChain(t *testing.T, m *Manager, def *chainDef) {
	t.Helper()
	if got, want := e.rules(t, def.table, def.name), wantRules(t, m, def); !slices.Equal(got, want) {
		t.Errorf("%s %s holds\n%q\nwant\n%q", def.table, def.name, got, want)
	}
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// rootUnchanged reads the root namespace's rules now (read-only, with iptables-save and,
// when installed, iptables-legacy-save) and fails t if they differ when t ends.
func rootUnchanged(t testing.TB) {
	t.Helper()
	rootDumpUnchanged(t, "rules", "iptables-save", "iptables-legacy-save")
}

// rootDumpUnchanged reads the root namespace's state now with each of tools that is
// installed (read-only: *-save, or `ipset list -n`), without comments and counters, and
// fails t if it differs when t ends.
func rootDumpUnchanged(t testing.TB, what string, tools ...string) {
	t.Helper()
	dump := func() string {
		var b strings.Builder
		for _, tool := range tools {
			if _, err := exec.LookPath(tool); err != nil {
				continue
			}
			args := []string{}
			if tool == "ipset" {
				args = []string{"list", "-n"}
			}
			out, err := exec.Command(tool, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s in the root namespace: %v: %s", tool, err, out)
			}
			for _, l := range strings.Split(string(out), "\n") {
				if !strings.HasPrefix(l, "#") {
					b.WriteString(counters.ReplaceAllString(l, "") + "\n")
				}
			}
		}
		return b.String()
	}
	before := dump()
	t.Cleanup(func() {
		if after := dump(); after != before {
			t.Errorf("the root namespace's %s changed!\nbefore:\n%s\nafter:\n%s", what, before, after)
		}
	})
}

func modifyingCalls(calls []string) []string {
	var out []string
	for _, c := range calls {
		if modifying[c] {
			out = append(out, c)
		}
	}
	return out
}
