#!/usr/bin/env bash
# `make images-airgap`: every image the stack needs, built from Debian's and PyPI's packages alone,
# for sites where no image registry can be reached. Needs root (debootstrap), a running Docker
# engine, debootstrap, and a Debian mirror and PyPI (or their internal mirrors):
#
#   DEBIAN_MIRROR            Debian mirror for the base and every apt-get (http://deb.debian.org/debian)
#   DEBIAN_SECURITY_MIRROR   its security suite (http://deb.debian.org/debian-security)
#   AIRGAP_PREFIX            the images' repository prefix (ocsf-anomaly)
#
# Builds PREFIX/debian:bookworm (debootstrap, docker import), PREFIX/python:3.11-bookworm, and the
# stand-ins PREFIX/redis:debian, PREFIX/prometheus:debian, PREFIX/alertmanager:debian,
# PREFIX/mlflow:VERSION; then writes deploy/docker/airgap.env, the image variables that make
# docker-compose use them:  docker-compose --env-file deploy/docker/airgap.env up -d
# An image already built is kept (remove it to rebuild); the Debian base is made once.
set -euo pipefail
cd "$(dirname "$0")/../.."

prefix=${AIRGAP_PREFIX:-ocsf-anomaly}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
mlflow_version=$(sed -n 's/^ARG MLFLOW_VERSION=//p' deploy/docker/mlflow.Dockerfile)
debian=$prefix/debian:bookworm
python=$prefix/python:3.11-bookworm

step() { printf '\n==> %s\n' "$*"; }

# A host behind a TLS-inspecting proxy trusts its CA; the images trust only what is copied here.
if ! compgen -G "deploy/docker/ca-certificates/*.crt" >/dev/null \
    && compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    echo "note: this host trusts extra CA certificates ($(echo /usr/local/share/ca-certificates/*.crt))" \
        "and deploy/docker/ca-certificates/ holds none. If pip or apt-get below fail their certificate" \
        "checks (a TLS-inspecting proxy), copy them there (README there), remove $python" \
        "(docker rmi $python) and run this again." >&2
fi

if docker image inspect "$debian" >/dev/null 2>&1; then
    step "$debian: already built"
else
    command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
    step "$debian: debootstrap --variant=minbase bookworm from $mirror (about a minute)"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log" >&2; exit 1; }
    rm -f "$rootfs.log"
    # the release, its updates and its security fixes, as the official Debian images list them
    cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import - "$debian" >/dev/null
fi

build() {  # build TAG DOCKERFILE [ARG=VALUE ...]
    local tag=$1 file=$2 args=()
    shift 2
    for arg in "$@"; do args+=(--build-arg "$arg"); done
    if docker image inspect "$tag" >/dev/null 2>&1; then
        step "$tag: already built"
        return
    fi
    step "$tag: docker build -f $file"
    docker build -q -f "$file" "${args[@]}" -t "$tag" . >/dev/null
}

build "$python" deploy/docker/python.Dockerfile "DEBIAN_IMAGE=$debian"
build "$prefix/redis:debian" deploy/docker/redis.Dockerfile "DEBIAN_IMAGE=$debian"
build "$prefix/prometheus:debian" deploy/docker/prometheus.Dockerfile "DEBIAN_IMAGE=$debian"
build "$prefix/alertmanager:debian" deploy/docker/alertmanager.Dockerfile "DEBIAN_IMAGE=$debian"
build "$prefix/mlflow:$mlflow_version" deploy/docker/mlflow.Dockerfile "PYTHON_IMAGE=$python"

cat >deploy/docker/airgap.env <<ENV
# Written by make images-airgap: docker-compose --env-file deploy/docker/airgap.env up -d
PYTHON_IMAGE=$python
REDIS_IMAGE=$prefix/redis:debian
PROMETHEUS_IMAGE=$prefix/prometheus:debian
ALERTMANAGER_IMAGE=$prefix/alertmanager:debian
MLFLOW_IMAGE=$prefix/mlflow:$mlflow_version
ENV
step "done: images tagged, image variables in deploy/docker/airgap.env"
docker images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep "^$prefix/"
