package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	goipt "github.com/coreos/go-iptables/iptables"
)

// ErrNoRestore is returned by a runner's Restore when there is no iptables-restore to
// run; the caller then edits rule by rule.
var ErrNoRestore = errors.New("iptables-restore not available")

// restoreTimeout bounds one iptables-restore run (beyond the xtables lock wait).
const restoreTimeout = lockWaitSeconds*time.Second + 20*time.Second

// cmdRunner is go-iptables, plus iptables-restore of the same front end for edits of
// many rules in one run.
type cmdRunner struct {
	*goipt.IPTables
	restorePath string // "" when not found
}

// Restore runs `iptables-restore --noflush --wait N` once with lines (commands such as
// "-I CHAIN 3 -s 192.0.2.1/32 -j ACCEPT", quoted as iptables-restore reads them) for
// table, committed as one transaction: either every line takes effect or none does. It
// runs in the network namespace of the calling thread.
func (r cmdRunner) Restore(table string, lines []string) error {
	if r.restorePath == "" {
		return ErrNoRestore
	}
	return runRestore(r.restorePath, table, lines)
}

func runRestore(path, table string, lines []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), restoreTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--noflush", "--wait", strconv.Itoa(lockWaitSeconds))
	cmd.Stdin = strings.NewReader(restoreScript(table, lines))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// restoreScript is the iptables-restore input that runs lines in table.
func restoreScript(table string, lines []string) string {
	var b strings.Builder
	b.WriteString("*" + table + "\n")
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// restoreLine is one edit as an iptables-restore command line: "-R chain pos rule",
// "-I chain pos rule" or "-D chain pos".
func restoreLine(chain string, e edit, rule []string) string {
	var b strings.Builder
	b.WriteString(map[editOp]string{opReplace: "-R", opInsert: "-I", opDelete: "-D"}[e.op])
	b.WriteString(" " + chain + " " + strconv.Itoa(e.pos))
	if e.op != opDelete {
		for _, a := range rule {
			b.WriteByte(' ')
			b.WriteString(restoreArg(a))
		}
	}
	return b.String()
}

// restoreArg quotes one argument the way iptables-restore splits its lines: an argument
// holding a blank, a quote, a backslash or '#' (or nothing) goes in double quotes, with
// '"' and '\' escaped by a backslash.
func restoreArg(a string) string {
	if a != "" && !strings.ContainsAny(a, " \t\"\\'#") {
		return a
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range a {
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	b.WriteByte('"')
	return b.String()
}
