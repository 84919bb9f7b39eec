#!/usr/bin/env bash
# Bounded loopback load on risk's AssessPortfolio: starts the mesh in Release on free ports (CSV feed seeds the
# history), drives AssessPortfolio for SECONDS (default 30) with CONCURRENCY callers (default 8) from the
# RebalanceMesh.Benchmarks load client, prints throughput and p50/p99, and stops the mesh. Loopback only; it ends
# by itself.
#   benchmarks/load/assess_load.sh [SECONDS] [CONCURRENCY]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SECONDS_TO_RUN="${1:-30}"
CONCURRENCY="${2:-8}"
export RMESH_STATE_DIR="$ROOT/.rmesh-load"
"$ROOT/scripts/ensure-tools.sh" redis
for project in services/Pricing/RebalanceMesh.Pricing services/Risk/RebalanceMesh.Risk services/Planning/RebalanceMesh.Planning \
               services/Execution/RebalanceMesh.Execution tools/RebalanceMesh.Cli benchmarks/RebalanceMesh.Benchmarks; do
  dotnet build "$ROOT/$project" -c Release --nologo -v quiet > /dev/null
done
RMESH="dotnet $ROOT/tools/RebalanceMesh.Cli/bin/Release/net10.0/rmesh.dll --repo $ROOT"
trap '$RMESH down > /dev/null || true; rm -rf "$RMESH_STATE_DIR"' EXIT
$RMESH up --free-ports --configuration Release > /dev/null
RISK="$(python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(next(x['GrpcUrl'] for x in s['Services'] if x['Name']=='risk'))" "$RMESH_STATE_DIR/state.json")"
echo "risk at $RISK; ${SECONDS_TO_RUN}s at concurrency $CONCURRENCY (after 3 s warm-up)"
dotnet "$ROOT/benchmarks/RebalanceMesh.Benchmarks/bin/Release/net10.0/RebalanceMesh.Benchmarks.dll" assess-load "$RISK" "$SECONDS_TO_RUN" "$CONCURRENCY"
