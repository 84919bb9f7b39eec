#!/usr/bin/env bash
# Builds the mesh's images on this machine, with no container registry: a base image from a Debian root file system
# (debootstrap against the mirror apt is configured with, read at build time, never written into the repository),
# then the four services from deploy/docker/*.Dockerfile with that base for both the build and the runtime stage —
# the build stage runs this machine's .NET SDK (mounted read-only), NuGet cache and trusted certificates (the way out
# to NuGet may be through a proxy this machine trusts; mounted at build time, never in an image); the publish is
# self-contained, so the .NET runtime comes from NuGet — and Redis from deploy/docker/redis.Dockerfile. Prints each
# image's size.
#   deploy/images/build.sh [TAG]        (default tag: dev; images are localhost/rebalancemesh/<name>:<TAG>)
# Rootful podman with runc and cgroupfs (see docs/operations.md, "Images"). Idempotent: the base is built once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TAG="${1:-dev}"
"$ROOT/scripts/ensure-tools.sh" podman
PODMAN=(podman --runtime runc --cgroup-manager=cgroupfs)
BASE=localhost/rebalancemesh/base:bookworm
DOTNET_ROOT_DIR="$(dirname "$(readlink -f "$(command -v dotnet)")")"
NUGET_DIR="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
mkdir -p "$NUGET_DIR"

if ! "${PODMAN[@]}" image exists "$BASE"; then
  echo "base image: debootstrap bookworm (minbase + the .NET runtime's native dependencies) …" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
  debootstrap --variant=minbase --include=ca-certificates,libicu72,libssl3,tzdata,zlib1g \
    bookworm "$work/rootfs" "${mirror:-http://deb.debian.org/debian}" >/dev/null
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/usr/share/doc/* "$work"/rootfs/usr/share/man/*
  # The SDK is mounted at /usr/share/dotnet in build stages only; APP_UID is the non-root user of the official images.
  tar -C "$work/rootfs" -c . | "${PODMAN[@]}" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/share/dotnet' \
    --change 'ENV APP_UID=1654' --change 'ENV DOTNET_CLI_TELEMETRY_OPTOUT=1' --change 'ENV DOTNET_NOLOGO=1' \
    - "$BASE" >/dev/null
  rm -rf "$work"
  trap - EXIT
fi

build() { # name dockerfile [build args…]
  local name="$1" file="$2"
  shift 2
  echo "image $name …" >&2
  "${PODMAN[@]}" build --quiet --network host --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
    --volume "$DOTNET_ROOT_DIR:/usr/share/dotnet:ro" --volume "$NUGET_DIR:/root/.nuget/packages" \
    --volume /etc/ssl/certs:/etc/ssl/certs:ro \
    --build-arg SDK_IMAGE="$BASE" --build-arg RUNTIME_IMAGE="$BASE" --build-arg BASE_IMAGE="$BASE" "$@" \
    -f "$ROOT/deploy/docker/$file" -t "localhost/rebalancemesh/$name:$TAG" "$ROOT" >/dev/null
}

build redis redis.Dockerfile
for service in pricing risk planning; do
  build "$service" "$service.Dockerfile"
done
build execution execution.Dockerfile --build-arg VENUE_SIMULATORS=true   # local runs trade on the simulated venues

for name in base:bookworm redis:$TAG pricing:$TAG risk:$TAG planning:$TAG execution:$TAG; do
  "${PODMAN[@]}" image inspect --format "{{.Size}}" "localhost/rebalancemesh/$name" \
    | awk -v n="localhost/rebalancemesh/$name" '{ printf "%-45s %6.0f MB\n", n, $1 / 1000000 }'
done
