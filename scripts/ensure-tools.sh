#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine, quietly, and only when missing:
#   redis-server (local mesh and integration tests), buf (contract lint, from npm into .tools/),
#   kubectl (offline rendering of deploy/k8s with its built-in kustomize).
# Usage: scripts/ensure-tools.sh [redis] [buf] [kubectl]   (no arguments: everything)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want="${*:-redis buf kubectl}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if [[ " $want " == *" redis "* ]] && ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server …" >&2
  apt_install redis-server
fi

if [[ " $want " == *" kubectl "* ]] && ! command -v kubectl >/dev/null 2>&1; then
  echo "installing kubectl …" >&2
  apt_install kubectl
fi

if [[ " $want " == *" buf "* ]] && [ ! -x "$ROOT/.tools/npm/node_modules/.bin/buf" ]; then
  echo "installing buf (npm @bufbuild/buf) …" >&2
  mkdir -p "$ROOT/.tools/npm"
  npm install --prefix "$ROOT/.tools/npm" --no-save --no-audit --no-fund --silent @bufbuild/buf@1.75.0 >/dev/null
fi
