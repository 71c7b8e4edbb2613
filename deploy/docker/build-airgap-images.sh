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
# PREFIX/mlflow:VERSION; then writes the image variables that make compose use them into `.env`
# beside docker-compose.yml, in a block between two marker lines that the next run replaces (the
# rest of .env, its tokens and passwords, is kept as it was; .env is created, readable by its owner
# only, when there is none). Then a plain `docker-compose up -d` (or `docker compose up -d`) runs
# the air-gapped images. Never `--env-file` a file with only the image variables: compose then
# reads it *instead of* .env, and the scorer starts without its tokens, Grafana with admin/admin.
# An image already built is kept (remove it to rebuild); the Debian base is made once.
#
#   --env-only   only (re)write the block in .env: the images are built already, or brought in
set -euo pipefail
cd "$(dirname "$0")/../.."

prefix=${AIRGAP_PREFIX:-ocsf-anomaly}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
mlflow_version=$(sed -n 's/^ARG MLFLOW_VERSION=//p' deploy/docker/mlflow.Dockerfile)
debian=$prefix/debian:bookworm
python=$prefix/python:3.11-bookworm
begin='# >>> make images-airgap: the air-gapped images (deploy/docker/build-airgap-images.sh rewrites this block)'
end='# <<< make images-airgap'

step() { printf '\n==> %s\n' "$*"; }

write_env() {  # the image variables into .env's marked block; every other line of .env kept
    local kept=""
    if [[ -e .env ]]; then
        kept=$(awk -v b="${begin%%:*}" -v e="$end" '
            index($0, b) == 1 { skip = 1; next }
            skip && index($0, e) == 1 { skip = 0; next }
            !skip
            END { exit skip }' .env) || {
            echo ".env has a '${begin%%:*}' line without its '$end' line after it: mend it by hand" >&2
            exit 1
        }
    else
        (umask 077 && : >.env)  # it is where the tokens and passwords go
    fi
    {
        if [[ -n $kept ]]; then printf '%s\n' "$kept"; fi
        # last in the file: compose takes the last value of a variable defined twice
        cat <<ENV
$begin
PYTHON_IMAGE=$python
REDIS_IMAGE=$prefix/redis:debian
PROMETHEUS_IMAGE=$prefix/prometheus:debian
ALERTMANAGER_IMAGE=$prefix/alertmanager:debian
MLFLOW_IMAGE=$prefix/mlflow:$mlflow_version
$end
ENV
    } >.env  # rewritten in place: its owner and mode stay
    # the file of earlier versions, which `--env-file` made replace .env: gone, so it is not used again
    rm -f deploy/docker/airgap.env
}

if [[ ${1:-} == --env-only ]]; then
    write_env
    step "image variables written to .env (between the '# >>> make images-airgap' and '# <<<' lines)"
    exit 0
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--env-only]" >&2
    exit 2
fi

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

write_env
step "done: images tagged, their variables in .env (docker-compose up -d runs them; tokens in .env kept)"
docker images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep "^$prefix/"
