#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine, quietly, and only when missing:
#   redis-server (local mesh and integration tests), kubectl (offline rendering of deploy/k8s with its built-in
#   kustomize), and from npm into .tools/npm: buf (contract lint and breaking-change check), kubernetes-models and
#   yaml (offline schema validation of the rendered manifests, scripts/validate-deploy.mjs), @grpc/grpc-js and
#   @grpc/proto-loader (the Node example client, examples/node), and python3-grpcio (the Python example client).
#   On request only: h2load (nghttp2-client) and grpcio (Debian's python3-grpcio) for the side-by-side gRPC
#   comparison in benchmarks/compare/grpc_health.sh; podman and debootstrap for the local images (deploy/images).
# Usage: scripts/ensure-tools.sh [redis] [kubectl] [npm] [h2load] [grpcio] [podman]
#   (no arguments: redis, kubectl and npm; "buf" is an alias of "npm")
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want="${*:-redis kubectl npm}"
want="${want//buf/npm}"

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

if [[ " $want " == *" h2load "* ]] && ! command -v h2load >/dev/null 2>&1; then
  echo "installing nghttp2-client (h2load) …" >&2
  apt_install nghttp2-client
fi

if [[ " $want " == *" podman "* ]] && { ! command -v podman >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; }; then
  echo "installing podman and debootstrap …" >&2
  apt_install podman runc debootstrap
fi

if [[ " $want " == *" grpcio "* ]] && ! /usr/bin/python3 -c 'import grpc' >/dev/null 2>&1; then
  echo "installing python3-grpcio …" >&2
  apt_install python3-grpcio
fi

# The npm tools are installed together (an install with --no-save prunes whatever it was not asked for).
NPM_TOOLS=(@bufbuild/buf@1.75.0 kubernetes-models@5.1.0 yaml@2.9.1 @grpc/grpc-js@1.14.7 @grpc/proto-loader@0.8.1)
npm_ready() {
  [ -x "$ROOT/.tools/npm/node_modules/.bin/buf" ] \
    && [ -f "$ROOT/.tools/npm/node_modules/kubernetes-models/package.json" ] \
    && [ -f "$ROOT/.tools/npm/node_modules/yaml/package.json" ] \
    && [ -f "$ROOT/.tools/npm/node_modules/@grpc/grpc-js/package.json" ] \
    && [ -f "$ROOT/.tools/npm/node_modules/@grpc/proto-loader/package.json" ]
}
if [[ " $want " == *" npm "* ]] && ! npm_ready; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "installing nodejs and npm …" >&2
    apt_install nodejs npm
  fi
  echo "installing ${NPM_TOOLS[*]} (npm) …" >&2
  mkdir -p "$ROOT/.tools/npm"
  # Three attempts (a registry's transient failure should not fail a CI run); the last one's errors are shown.
  for attempt in 1 2 3; do
    if npm install --prefix "$ROOT/.tools/npm" --no-save --no-audit --no-fund --silent "${NPM_TOOLS[@]}" >/dev/null 2>"$ROOT/.tools/npm/install.err"; then
      break
    fi
    if [ "$attempt" -eq 3 ]; then
      cat "$ROOT/.tools/npm/install.err" >&2
      exit 1
    fi
    echo "npm install failed (attempt $attempt of 3); retrying in $((attempt * 5)) s" >&2
    sleep $((attempt * 5))
  done
fi
