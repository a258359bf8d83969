#!/usr/bin/env bash
# Runs every fuzz target in the repository for FUZZTIME each (default 30s),
# one after the other, and fails if any of them fails. The targets are
# listed from the code, every `func FuzzName(` at the start of a line in a
# _test.go file, so that a new one cannot be left out; scripts/fuzz_test.go
# checks that this listing finds every fuzz target the Go parser sees.
#
# usage: scripts/fuzz.sh        fuzz every target
#        scripts/fuzz.sh -l     only list them, one "./pkg Name" a line
# FUZZ_ONLY, when set, is an extended regexp on "./pkg Name": only the
# targets it matches run (make fuzz-long sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

# targets prints "./pkg Name" for every fuzz target, sorted.
targets() {
  git ls-files --cached --others --exclude-standard -- '*_test.go' |
    grep -v -E '(^|/)(testdata|vendor)/' |
    xargs grep -H -E '^func Fuzz[A-Za-z0-9_]*\(' |
    sed -E 's#^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#./\1 \2#; s#^[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#. \1#' |
    sort
}

if [ "${1:-}" = "-l" ]; then
  targets
  exit 0
fi

GO=${GO:-go}
fuzztime=${FUZZTIME:-30s}
failed=()
total=0
while read -r pkg name; do
  total=$((total + 1))
  echo "== $pkg $name ($fuzztime)"
  if ! "$GO" test "$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime"; then
    failed+=("$pkg $name")
  fi
done < <(targets | grep -E -- "${FUZZ_ONLY:-.}")

if [ "$total" -eq 0 ]; then
  echo "fuzz: no fuzz targets found" >&2
  exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} of $total targets failed:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "fuzz: all $total targets passed"
