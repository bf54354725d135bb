#!/bin/sh
# Short, bounded runs of every fuzz target in the module: `make fuzz` (and `make test`).
# Run from the module root. Environment: GO, FUZZTIME (per target, a duration or Nx),
# FUZZPARALLEL (fuzzing workers per target).
#
# Targets are found by grep (func FuzzXxx in *_test.go files), so new packages and targets
# are picked up without editing this file. Each target's output goes to a temporary file
# and is printed, with the package and the target named, when the target fails.
#
# Go's fuzzing engine can fail without having found anything, more often on a loaded
# machine: "context deadline exceeded" as -fuzztime ends (go.dev/issue/75804, a race in the
# coordinator, fixed in Go 1.27), or "fuzzing process hung or terminated unexpectedly" when
# a worker dies of something other than its input. Such a failure writes no input to
# testdata/fuzz, so the target runs once more, and fails the run only if it fails again;
# both outputs are printed. A failure that writes an input to testdata/fuzz/<target> is a
# finding: the input is replayed with plain `go test` to show whether it reproduces, and
# the run fails. Fix the bug and commit the input with the fix.
set -u

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
FUZZPARALLEL=${FUZZPARALLEL:-1}

# Bound each run: the fuzz time plus two minutes for building, start-up and the seed corpus,
# so a wedged engine ends with a goroutine dump instead of sitting out go test's default
# ten minutes. FUZZTIME in other forms (1m30s, 1h, 1000x) runs without a bound.
case $FUZZTIME in
*[!0-9]*[sm] | *[!0-9sm]* | '') timeout=0 ;;
*s) timeout=$((${FUZZTIME%s} + 120))s ;;
*m) timeout=$((${FUZZTIME%m} * 60 + 120))s ;;
esac

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# show FILE WHAT: print a kept output between markers.
show() {
	echo "----- $2"
	cat "$1"
	echo "----- end of $2"
}

# corpus DIR TARGET: the target's inputs under testdata/fuzz, one path a line.
corpus() {
	find "$1/testdata/fuzz/$2" -type f 2>/dev/null | sort
}

# fuzz DIR TARGET LOG: one run of the fuzzing engine.
fuzz() {
	"$GO" test -run '^$' -fuzz "^$2\$" -fuzztime "$FUZZTIME" -parallel "$FUZZPARALLEL" \
		-timeout "$timeout" "$1" </dev/null >"$3" 2>&1
}

# Every target, "dir target" a line.
grep -rl --include='*_test.go' '^func Fuzz' . | grep -v /testdata/ | sed 's|/[^/]*$||' | sort -u |
	while read -r dir; do
		sed -n "s|^func \(Fuzz[A-Za-z0-9_]*\)(.*|$dir \1|p" "$dir"/*_test.go
	done >"$tmp/targets"
if [ ! -s "$tmp/targets" ]; then
	echo "FUZZ FAILED: no fuzz targets found under $(pwd)" >&2
	exit 1
fi

targets=0
failed=""
retried=""
while read -r dir f; do
	targets=$((targets + 1))
	log="$tmp/$targets"
	printf 'fuzz %s %s (%s, -parallel %s): ' "$dir" "$f" "$FUZZTIME" "$FUZZPARALLEL"
	start=$(date +%s)
	corpus "$dir" "$f" >"$log.before"
	if fuzz "$dir" "$f" "$log.1"; then
		echo "ok $(($(date +%s) - start))s"
		continue
	fi
	corpus "$dir" "$f" | comm -13 "$log.before" - >"$log.new"
	if [ -s "$log.new" ]; then
		echo "FAILED: a new input in $dir/testdata/fuzz/$f"
		show "$log.1" "output of $dir $f"
		while read -r input; do
			printf 'replaying %s with go test: ' "$input"
			if "$GO" test -run "^$f/^${input##*/}\$" -count=1 -timeout 2m "$dir" </dev/null >"$log.replay" 2>&1; then
				echo "passes (a flaky bug, or on a loaded machine the engine's 10 s limit per input)"
			else
				echo "fails"
				tail -n 40 "$log.replay"
			fi
		done <"$log.new"
		echo "FUZZ FAILED: $dir $f found a failing input: fix the bug, commit the input under testdata/fuzz"
		failed="$failed $dir:$f"
		continue
	fi
	echo "failed without a failing input; running it once more"
	show "$log.1" "output of $dir $f, first run"
	printf 'fuzz %s %s again: ' "$dir" "$f"
	if fuzz "$dir" "$f" "$log.2"; then
		echo "ok $(($(date +%s) - start))s (the first failure was the fuzzing engine's)"
		retried="$retried $dir:$f"
		continue
	fi
	echo "FAILED again"
	show "$log.2" "output of $dir $f, second run"
	echo "FUZZ FAILED: $dir $f failed twice"
	failed="$failed $dir:$f"
done <"$tmp/targets"

echo "fuzz: $targets targets${retried:+; passed on a second run:$retried}"
if [ -n "$failed" ]; then
	echo "FUZZ FAILED:$failed" >&2
	exit 1
fi
