#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine, quietly, and only when missing:
#   redis-server (local mesh and integration tests), buf (contract lint, from npm into .tools/).
# Usage: scripts/ensure-tools.sh [redis] [buf]   (no arguments: everything)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want="${*:-redis buf}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [[ " $want " == *" redis "* ]] && ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server …" >&2
  as_root apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server >/dev/null
fi

if [[ " $want " == *" buf "* ]] && [ ! -x "$ROOT/.tools/npm/node_modules/.bin/buf" ]; then
  echo "installing buf (npm @bufbuild/buf) …" >&2
  mkdir -p "$ROOT/.tools/npm"
  npm install --prefix "$ROOT/.tools/npm" --no-save --no-audit --no-fund --silent @bufbuild/buf@1.75.0 >/dev/null
fi
