#!/usr/bin/env bash
# Installs the system packages the local cloud and the tests need (Debian/Ubuntu, as root):
# buildah (plays Docker), docker-registry (plays ACR), busybox-static (the stand-in base image),
# the shellcheck linter for build.sh, curl and python3 (build.sh's own needs), git, and mmdebstrap
# (makes the Debian Rust toolchain image the real-Dockerfile test builds with). Idempotent.
set -euo pipefail
needed=()
for tool in buildah:buildah docker-registry:docker-registry busybox:busybox-static shellcheck:shellcheck \
  curl:curl python3:python3 git:git newuidmap:uidmap mmdebstrap:mmdebstrap; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || needed+=("${tool#*:}")
done
[ -x /bin/busybox ] || needed+=(busybox-static)
if [ "${#needed[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: missing ${needed[*]}; install them as root: apt-get install ${needed[*]}" >&2
  exit 1
fi
echo "setup-system: installing ${needed[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${needed[@]}" ca-certificates >/dev/null
