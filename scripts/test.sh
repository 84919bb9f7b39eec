#!/usr/bin/env bash
# The test command: installs what the tests need (redis-server, buf, kubectl) when missing, lints the contracts,
# builds with warnings as errors and runs every test project. Ends with its own line "N passed, N failed" and
# exits non-zero on any failure.
#   scripts/test.sh                 everything
#   TEST_FILTER='Category!=Integration' scripts/test.sh    skip the whole-mesh tests
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

passed=0
failed=0

# Prints the closing line "N passed, N failed"; with TEST_SUMMARY_FILE set (as .ci/run does) writes it there instead,
# so the caller prints it as its own last line.
report() {
  if [ -n "${TEST_SUMMARY_FILE:-}" ]; then echo "$1" > "$TEST_SUMMARY_FILE"; else echo "$1"; fi
}

if ! "$ROOT/scripts/ensure-tools.sh" redis buf kubectl; then
  echo "tool installation failed"
  report "0 passed, 1 failed"
  exit 1
fi

echo "== buf lint (protos/)"
if "$ROOT/.tools/npm/node_modules/.bin/buf" lint; then
  passed=$((passed + 1)); echo "buf lint: ok"
else
  failed=$((failed + 1)); echo "buf lint: FAILED"
fi

echo "== dotnet build (warnings are errors)"
if ! dotnet build RebalanceMesh.sln -c Debug --nologo -v quiet -clp:ErrorsOnly; then
  echo "build failed"
  report "$passed passed, $((failed + 1)) failed"
  exit 1
fi

echo "== dotnet test"
log="$(mktemp)"
filter=()
if [ -n "${TEST_FILTER:-}" ]; then filter=(--filter "$TEST_FILTER"); fi
dotnet test RebalanceMesh.sln -c Debug --no-build --nologo "${filter[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# dotnet prints one summary per test assembly: "Passed!  - Failed: 0, Passed: 37, Skipped: 0, Total: 37 …"
while read -r f p; do
  failed=$((failed + f)); passed=$((passed + p))
done < <(sed -nE 's/.*(Passed|Failed)! +- +Failed: +([0-9]+), +Passed: +([0-9]+).*/\2 \3/p' "$log")
assemblies=$(grep -cE '(Passed|Failed)! +- +Failed:' "$log" || true)
rm -f "$log"

if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  # The runner failed without a failed test (crash, missing assembly): count it.
  failed=$((failed + 1))
fi
if [ "$assemblies" -eq 0 ]; then
  echo "no test assembly ran"
  failed=$((failed + 1))
fi

report "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
