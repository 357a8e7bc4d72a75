#!/usr/bin/env bash
# Build the ClassroomSync image with buildah, without Docker and without a registry (used by `make image`).
#
# 1. base: a Debian bookworm root filesystem with Python 3.11 made by mmdebstrap, imported with podman as
#    localhost/classroomsync-base:bookworm (cached: .local/image/base-bookworm.tar, rebuilt only when missing);
# 2. the wheel of this checkout (pip wheel → .local/image/dist) and its dependencies' wheels (pip download,
#    cached in .local/image/wheels);
# 3. buildah bud --isolation=chroot -f deploy/Containerfile --build-arg BASE=… → localhost/classroomsync:<version>
#    (also tagged :latest).
#
# Environment: PYTHON (host interpreter with pip, default python3), IMAGE (default localhost/classroomsync).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
IMAGE=${IMAGE:-localhost/classroomsync}
BASE_REF=localhost/classroomsync-base:bookworm
CACHE=.local/image
VERSION=$("$PYTHON" -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
mkdir -p "$CACHE/wheels"
started=$(date +%s)
say() { echo "[image $(( $(date +%s) - started ))s] $*" >&2; }

for tool in buildah podman mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y buildah podman mmdebstrap" >&2; exit 1; }
done

if ! podman image exists "$BASE_REF"; then
  if [ ! -s "$CACHE/base-bookworm.tar" ]; then
    say "mmdebstrap: Debian bookworm + python3.11 → $CACHE/base-bookworm.tar (once)"
    mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      --aptopt='APT::Install-Recommends "false"' \
      --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
      --format=tar bookworm "$CACHE/base-bookworm.tar.tmp" >&2
    mv "$CACHE/base-bookworm.tar.tmp" "$CACHE/base-bookworm.tar"
  fi
  say "podman import → $BASE_REF"
  podman import --change 'CMD ["/bin/bash"]' "$CACHE/base-bookworm.tar" "$BASE_REF" >/dev/null
fi

say "wheel of this checkout"
rm -rf "$CACHE/dist"
"$PYTHON" -m pip wheel -q --no-deps -w "$CACHE/dist" . >&2
say "dependency wheels (cached in $CACHE/wheels)"
"$PYTHON" -m pip download -q -d "$CACHE/wheels" -c constraints.txt \
  --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --implementation cp --abi cp311 \
  --abi abi3 --abi none --platform any "$CACHE"/dist/*.whl pip setuptools >&2

say "buildah bud → $IMAGE:$VERSION"
buildah bud --isolation=chroot --layers=false -q -f deploy/Containerfile \
  --build-arg "BASE=$BASE_REF" -t "$IMAGE:$VERSION" -t "$IMAGE:latest" . >&2
say "built $IMAGE:$VERSION"
echo "$IMAGE:$VERSION"
