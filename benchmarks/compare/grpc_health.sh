#!/usr/bin/env bash
# Side by side, on loopback: h2load drives grpc.health.v1.Health/Check on one RebalanceMesh service (Release, its
# appsettings.json in force: Microsoft.AspNetCore logs at Warning) and on a plain Python grpcio server with the same
# request count and concurrency, and prints requests per second and the ratio. Bounded: 6 runs of N requests per target.
#   benchmarks/compare/grpc_health.sh [service] [requests] [streams]     (default: risk, 30000, 10; 4 connections)
# The mesh side is asked twice: the overall health service ("": readiness, Redis checked at most once a second) and
# "liveness" (the process alone). Installs h2load and python3-grpcio when missing; starts and stops its own mesh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SERVICE="${1:-risk}"
REQUESTS="${2:-30000}"
STREAMS="${3:-10}"
"$ROOT/scripts/ensure-tools.sh" h2load grpcio redis
work="$(mktemp -d)"
export RMESH_STATE_DIR="$work/state"
cleanup() {
  [ -n "${python_pid:-}" ] && kill "$python_pid" 2>/dev/null || true
  [ -n "${aio_pid:-}" ] && kill "$aio_pid" 2>/dev/null || true
  "$ROOT/rmesh" down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"$ROOT/rmesh" up --free-ports --configuration Release >/dev/null
grpc_url="$(/usr/bin/python3 -c "import json,sys; s=json.load(open('$RMESH_STATE_DIR/state.json')); print([x['GrpcUrl'] for x in s['Services'] if x['Name']=='$SERVICE'][0])")"
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
python_port="$(free_port)"
aio_port="$(free_port)"
/usr/bin/python3 "$ROOT/benchmarks/compare/grpc_health_server.py" "$python_port" >/dev/null 2>&1 &
python_pid=$!
/usr/bin/python3 "$ROOT/benchmarks/compare/grpc_health_server.py" "$aio_port" --aio >/dev/null 2>&1 &
aio_pid=$!
sleep 1

# The request bodies: a 5-byte gRPC frame header, then HealthCheckRequest (service "" is empty; "liveness" is field 1).
printf '\x00\x00\x00\x00\x00' > "$work/overall.bin"
printf '\x00\x00\x00\x00\x0a\x0a\x08liveness' > "$work/liveness.bin"

rate() { # url body → requests per second (best of three runs after three warm-up runs of the same size)
  # The warm-up matters for .NET: tiered compilation promotes the hot path to optimised code only after it has run a
  # while; with a 2,000-request warm-up the service measured at a third of its steady rate. Python has no JIT: its rate
  # is the same warmed or not, and both sides get the same procedure.
  local best=0
  for _ in 1 2 3; do
    h2load -n "$REQUESTS" -c 4 -m "$STREAMS" -d "$2" -H 'content-type: application/grpc' -H 'te: trailers' "$1/grpc.health.v1.Health/Check" >/dev/null
  done
  for _ in 1 2 3; do
    local out rps
    out="$(h2load -n "$REQUESTS" -c 4 -m "$STREAMS" -d "$2" -H 'content-type: application/grpc' -H 'te: trailers' "$1/grpc.health.v1.Health/Check")"
    if ! grep -qE " 0 failed, 0 errored, 0 timeout" <<<"$out"; then
      grep -E "requests:|status codes" <<<"$out" >&2
      return 1
    fi
    rps="$(sed -nE 's/^finished in [^,]+, ([0-9.]+) req\/s.*/\1/p' <<<"$out")"
    best="$(/usr/bin/python3 -c "print(max($best, $rps))")"
  done
  echo "$best"
}

mesh_overall="$(rate "$grpc_url" "$work/overall.bin")" || { echo "h2load failed against $SERVICE" >&2; exit 1; }
mesh_liveness="$(rate "$grpc_url" "$work/liveness.bin")" || { echo "h2load failed against $SERVICE (liveness)" >&2; exit 1; }
python="$(rate "http://127.0.0.1:$python_port" "$work/overall.bin")" || { echo "h2load failed against Python grpcio" >&2; exit 1; }
aio="$(rate "http://127.0.0.1:$aio_port" "$work/overall.bin")" || { echo "h2load failed against Python grpcio (asyncio)" >&2; exit 1; }
/usr/bin/python3 - "$SERVICE" "$mesh_overall" "$mesh_liveness" "$python" "$aio" "$REQUESTS" "$STREAMS" <<'PY'
import sys
service, overall, liveness, python, aio, n, streams = sys.argv[1], *map(float, sys.argv[2:6]), sys.argv[6], sys.argv[7]
print(f"grpc.health.v1.Health/Check, {n} requests, 4 connections × {streams} streams, best of 3 after 3 warm-up runs (req/s):")
print(f"  {service} (overall: readiness)  {overall:10.0f}   {overall / aio:5.1f}× grpcio asyncio   {overall / python:5.1f}× grpcio thread pool")
print(f"  {service} (liveness)            {liveness:10.0f}   {liveness / aio:5.1f}× grpcio asyncio   {liveness / python:5.1f}× grpcio thread pool")
print(f"  Python grpcio, asyncio        {aio:10.0f}")
print(f"  Python grpcio, thread pool    {python:10.0f}")
PY
