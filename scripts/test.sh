#!/usr/bin/env bash
# The test command: installs what the tests need (redis-server, kubectl, node tools) when missing, lints the
# contracts and checks them for breaking changes, renders and validates every deploy/ overlay offline, builds with
# warnings as errors, builds the images and runs the demo against them as containers, and runs every test project. Ends with its own
# line "N passed, N failed" and exits non-zero on any failure.
#   scripts/test.sh                 everything
#   TEST_FILTER='Category!=Integration' scripts/test.sh    skip the whole-mesh tests
#   SKIP_IMAGES=1 scripts/test.sh   skip building the images and the container smoke test (quicker local runs)
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

if ! "$ROOT/scripts/ensure-tools.sh" redis kubectl npm grpcio podman; then
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

# Contracts guard independent releases: no breaking change against main (on a branch), or against the previous
# commit (on main itself). BUF_AGAINST overrides the reference (for example '.git#tag=v1.2.0').
echo "== buf breaking (protos/)"
against="${BUF_AGAINST:-}"
if [ -z "$against" ] && git -C "$ROOT" rev-parse --verify -q HEAD >/dev/null; then
  if [ "$(git -C "$ROOT" rev-parse HEAD)" != "$(git -C "$ROOT" rev-parse -q --verify main 2>/dev/null || true)" ] && git -C "$ROOT" rev-parse -q --verify main >/dev/null; then
    against=".git#branch=main"
  elif git -C "$ROOT" rev-parse -q --verify HEAD~1 >/dev/null; then
    against=".git#ref=$(git -C "$ROOT" rev-parse HEAD~1)"
  fi
fi
if [ -z "$against" ]; then
  echo "buf breaking: skipped (no git history to compare with)"
elif "$ROOT/.tools/npm/node_modules/.bin/buf" breaking --against "$against"; then
  passed=$((passed + 1)); echo "buf breaking against $against: ok"
else
  failed=$((failed + 1)); echo "buf breaking against $against: FAILED"
fi

echo "== deploy/: every overlay renders and validates offline (Kubernetes OpenAPI schemas, Dapr spec fields)"
for overlay in base overlays/dev overlays/prod; do
  if kubectl kustomize "$ROOT/deploy/k8s/$overlay" | node "$ROOT/scripts/validate-deploy.mjs" > /tmp/validate-deploy.$$ 2>&1; then
    passed=$((passed + 1)); echo "deploy/k8s/$overlay: $(tail -1 /tmp/validate-deploy.$$)"
  else
    failed=$((failed + 1)); echo "deploy/k8s/$overlay: FAILED"; cat /tmp/validate-deploy.$$
  fi
  rm -f /tmp/validate-deploy.$$
done

echo "== dotnet build (warnings are errors)"
if ! dotnet build RebalanceMesh.sln -c Debug --nologo -v quiet -clp:ErrorsOnly; then
  echo "build failed"
  report "$passed passed, $((failed + 1)) failed"
  exit 1
fi

# The images, built and run here: deploy/images/build.sh builds the base (debootstrap), Redis and the four services
# (each Dockerfile's self-contained publish, Release), then the mesh runs from them as containers — non-root, read-only
# root file system, the manifests' environment — and the demo (both acts) must pass against it. The production images
# must hold no simulator: execution's simulated venues are a plugin only the development image adds.
if [ -z "${SKIP_IMAGES:-}" ]; then
  echo "== images: build, run as containers, demo"
  images_log="$(mktemp)"
  images_state="$(mktemp -d)"
  rmesh_cli=(dotnet "$ROOT/tools/RebalanceMesh.Cli/bin/Debug/net10.0/rmesh.dll" --repo "$ROOT")
  if "$ROOT/deploy/images/build.sh" ci >"$images_log" 2>&1 \
    && RMESH_STATE_DIR="$images_state" timeout 300 "${rmesh_cli[@]}" up --containers --free-ports --tag ci >>"$images_log" 2>&1 \
    && RMESH_STATE_DIR="$images_state" timeout 600 "${rmesh_cli[@]}" demo --book 200 >>"$images_log" 2>&1; then
    passed=$((passed + 1)); echo "images and containers: ok"
    grep -E "^localhost/rebalancemesh/" "$images_log"
  else
    failed=$((failed + 1)); echo "images and containers: FAILED"; tail -40 "$images_log"
  fi
  RMESH_STATE_DIR="$images_state" "${rmesh_cli[@]}" down >/dev/null 2>&1 || true
  for service in pricing risk planning; do
    if podman --runtime runc --cgroup-manager=cgroupfs run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --entrypoint /bin/sh "localhost/rebalancemesh/$service:ci" -c 'ls /app' 2>/dev/null | grep -qi simulator; then
      failed=$((failed + 1)); echo "image $service holds a simulator: FAILED"
    fi
  done
  rm -rf "$images_state" "$images_log"
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
